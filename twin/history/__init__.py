"""The historian: every signal change and alarm stored in DuckDB, and replay of the plant at any instant."""
