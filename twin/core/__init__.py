"""The twin's core: the runtime cache, the USD stage with its live layer, transforms, alarms and errors.

Every other package of the twin builds on this one, and it imports nothing else of the twin.
It needs USD and numpy only: no Warp, no server, no network.
"""
