"""Guests and vendors: the people messages are sent to."""
