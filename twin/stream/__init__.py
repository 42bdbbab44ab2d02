"""The wire: the binary stream protocol, JSON frames, and the hub that serves them to websocket clients.

Numpy only (no Warp, no USD), so the remote SDK decodes frames with the same code the server encodes them.
"""
