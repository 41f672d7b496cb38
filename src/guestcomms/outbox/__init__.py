"""The dev outbox: a provider that stores what would have been sent, for reading back."""
