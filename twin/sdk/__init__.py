"""The Python SDK: `twin.connect(url)` (sync), `twin.connect_async(url)`, and `twin.open(layout)` in-process,
all with the same methods and value types (docs/sdk.md)."""
