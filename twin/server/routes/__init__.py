"""One router per API area; each takes what it needs through the dependencies in `twin.server.deps`."""
