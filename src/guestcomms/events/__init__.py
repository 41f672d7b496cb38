"""Events (weddings and other occasions), their guests and vendors, and households."""
