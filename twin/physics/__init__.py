"""Rigid-body physics of the line on Newton: a model built once from the layout's UsdPhysics prims, state
arrays stepped at a fixed step, and sensors and collision checks read from that state."""
