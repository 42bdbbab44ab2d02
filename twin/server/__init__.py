"""The HTTP server: the FastAPI app, its dependencies (the twin, roles, the historian) and one router per API area."""
