"""Pure domain logic: value types, the delivery state machine, retry policy. No I/O here."""
