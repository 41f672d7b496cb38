"""The send engine: the worker loop, the composer that turns deliveries into emails."""
