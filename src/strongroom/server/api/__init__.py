"""The HTTP API: routes, the error envelope, request middleware."""
