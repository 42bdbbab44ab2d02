"""Connectors: binding files and the OPC-UA client that feed the twin's runtime cache (one way in)."""
