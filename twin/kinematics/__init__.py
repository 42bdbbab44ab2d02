"""Robot kinematics on Warp: the immutable chain model, its URDF and USD readers, and the kernels on it.

A `Chain` is built once (from URDF or a UsdPhysics articulation) and uploaded once per device;
forward kinematics, Jacobians, inverse kinematics and trajectories are kernels over its arrays.
Imports only `twin.core`.
"""
