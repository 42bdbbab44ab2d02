"""A site of many lines: `twin site SITE.yaml` runs one `twin serve` per line and a site server that reads what
they publish to the broker (docs/site.md)."""
