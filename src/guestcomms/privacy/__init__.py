"""Privacy requests: export everything held about a contact, erase a contact, and purge old
deliveries under an organization's retention policy; each run recorded as a request."""
