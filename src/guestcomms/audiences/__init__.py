"""Saved audiences: named filters over an organization's contacts and event guests."""
