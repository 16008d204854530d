"""Tasks: steps that use secrets, run by a durable engine, with tools and redaction."""
