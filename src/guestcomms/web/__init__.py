"""Server-rendered pages for people: the dev outbox viewer."""
