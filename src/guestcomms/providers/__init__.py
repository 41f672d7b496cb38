"""Provider accounts an organization configures per channel, and how they are routed."""
