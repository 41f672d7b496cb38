"""Channels and providers: the protocol every provider implements, and the providers."""
