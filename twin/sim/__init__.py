"""The per-tick runtime: a `Twin` turns the signals in the cache into robot links, part poses and live KPIs.

`Twin.step()` is the simulation stage of the data flow; it reads and writes only the runtime
cache and the live layer, so connectors, the stream and the server never touch each other.
"""
