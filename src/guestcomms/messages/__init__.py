"""Send requests (messages), their deliveries (the queue) and delivery history."""
