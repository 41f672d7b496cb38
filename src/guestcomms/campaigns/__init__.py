"""Campaigns: a message to an audience, fanned out in batches, on a schedule."""
