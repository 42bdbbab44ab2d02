"""Forward kinematics kernels specialised to one robot, generated from its chain.

The generic kernel (twin/kinematics/kernels.py) reads every joint's origin, axis and type from
memory and branches on them. For a batch of one robot those are constants, so this
module writes a kernel with them folded in: a revolute joint's local rotation
`origin_rotation * (axis sin(q/2), cos(q/2))` becomes four `a*s + b*c` terms with the
constants a, b precomputed here and zero terms dropped. The generated source is written
to the user's cache folder and imported, because Warp compiles kernels from their
Python source; it is keyed by a hash of the chain, so it is generated once per robot.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import warp as wp

from twin.core.transforms import matrix_to_pose, pose_to_matrix
from twin.kinematics.joints import FIXED, PRISMATIC, REVOLUTE

if TYPE_CHECKING:
    from twin.kinematics.chain import Chain

_EPS = 1e-12


def _number(value: float) -> str:
    return repr(float(value))


Terms = list[tuple[float, str]]  # a linear expression: sum of constant * symbol ("1" for a constant)


def _expression(terms: Terms) -> str:
    """Source of a linear expression, zero terms dropped ("" when nothing is left)."""
    parts = []
    for constant, symbol in terms:
        if abs(constant) <= _EPS:
            continue
        if symbol == "1":
            parts.append(_number(constant))
        elif abs(constant - 1.0) <= _EPS:
            parts.append(symbol)
        elif abs(constant + 1.0) <= _EPS:
            parts.append(f"-{symbol}")
        else:
            parts.append(f"{_number(constant)} * {symbol}")
    return " + ".join(parts).replace("+ -", "- ")


def _local_rotation(origin_quat: np.ndarray, axis: np.ndarray | None) -> list[Terms]:
    """x, y, z, w of origin_quat * (axis sin(q/2), cos(q/2)) as terms in s and c (constants if no axis)."""
    x1, y1, z1, w1 = (float(v) for v in origin_quat)
    if axis is None:
        return [[(x1, "1")], [(y1, "1")], [(z1, "1")], [(w1, "1")]]
    ax, ay, az = (float(v) for v in axis)
    return [
        [(w1 * ax + y1 * az - z1 * ay, "s"), (x1, "c")],
        [(w1 * ay - x1 * az + z1 * ax, "s"), (y1, "c")],
        [(w1 * az + x1 * ay - y1 * ax, "s"), (z1, "c")],
        [(-x1 * ax - y1 * ay - z1 * az, "s"), (w1, "c")],
    ]


def _sum(products: list[tuple[float, str, str]]) -> str:
    """Source of sum(sign * variable * (expression)), skipping empty expressions."""
    parts = []
    for sign, variable, expression in products:
        if not expression:
            continue
        term = f"{variable} * ({expression})" if (" " in expression) else f"{variable} * {expression}"
        parts.append(("- " if sign < 0 else "+ ") + term)
    if not parts:
        return "0.0"
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _compose(parent: str, child: str, translation: np.ndarray, rotation: list[Terms]) -> list[str]:
    """Scalar code for child = parent * (translation, rotation), with the constants folded in."""
    px, py, pz, qx, qy, qz, qw = (f"{parent}{c}" for c in ("px", "py", "pz", "qx", "qy", "qz", "qw"))
    vx, vy, vz = (float(v) for v in translation)
    lines = []
    if max(abs(vx), abs(vy), abs(vz)) > _EPS:
        # rotate v by the parent's quaternion: v + 2 w (u x v) + 2 u x (u x v), u = (qx, qy, qz)
        tx = _expression([(vz, qy), (-vy, qz)])
        ty = _expression([(vx, qz), (-vz, qx)])
        tz = _expression([(vy, qx), (-vx, qy)])
        lines += [f"    tx = {tx or '0.0'}", f"    ty = {ty or '0.0'}", f"    tz = {tz or '0.0'}"]
        for axis, constant, a, b, u1, u2 in (("x", vx, "tz", "ty", qy, qz), ("y", vy, "tx", "tz", qz, qx),
                                             ("z", vz, "ty", "tx", qx, qy)):
            base = {"x": px, "y": py, "z": pz}[axis]
            own = {"x": "tx", "y": "ty", "z": "tz"}[axis]
            offset = f" + {_number(constant)}" if abs(constant) > _EPS else ""
            lines.append(f"    {child}p{axis} = {base}{offset} + 2.0 * ({qw} * {own} + {u1} * {a} - {u2} * {b})")
    else:
        lines += [f"    {child}px = {px}", f"    {child}py = {py}", f"    {child}pz = {pz}"]
    rx, ry, rz, rw = (_expression(component) for component in rotation)
    lines += [
        f"    {child}qx = {_sum([(1, qw, rx), (1, qx, rw), (1, qy, rz), (-1, qz, ry)])}",
        f"    {child}qy = {_sum([(1, qw, ry), (-1, qx, rz), (1, qy, rw), (1, qz, rx)])}",
        f"    {child}qz = {_sum([(1, qw, rz), (1, qx, ry), (-1, qy, rx), (1, qz, rw)])}",
        f"    {child}qw = {_sum([(1, qw, rw), (-1, qx, rx), (-1, qy, ry), (-1, qz, rz)])}",
    ]
    return lines


def kernel_source(chain: Chain, name: str) -> str:
    """Python source of a Warp kernel evaluating `chain` for one configuration per thread."""
    poses = matrix_to_pose(chain.joint_origin)
    lines = [
        "import warp as wp",
        "",
        "",
        "@wp.kernel",
        f"def {name}(q: wp.array2d(dtype=float), base: wp.array(dtype=wp.transform),"
        " link_world: wp.array2d(dtype=wp.transform)):",
        "    i = wp.tid()",
        "    root = base[i]",
        "    bpx = root[0]",
        "    bpy = root[1]",
        "    bpz = root[2]",
        "    bqx = root[3]",
        "    bqy = root[4]",
        "    bqz = root[5]",
        "    bqw = root[6]",
    ]
    for k in range(chain.n_links):
        kind = int(chain.joint_type[k])
        axis = None
        if kind == REVOLUTE:
            angle = f"q[i, {int(chain.joint_q_index[k])}]"
            if chain.mimic_multiplier[k] != 1.0 or chain.mimic_offset[k] != 0.0:
                angle = f"({_number(chain.mimic_multiplier[k])} * {angle} + {_number(chain.mimic_offset[k])})"
            lines += [f"    h = 0.5 * {angle}", "    s = wp.sin(h)", "    c = wp.cos(h)"]
            axis = chain.joint_axis[k]
        parent = int(chain.link_parent[k])
        source = "b" if parent < 0 else f"l{parent}"
        lines += _compose(source, f"l{k}", poses[k, :3], _local_rotation(poses[k, 3:], axis))
        if kind == PRISMATIC:  # slide along the axis, in the joint frame just composed
            value = f"({_number(chain.mimic_multiplier[k])} * q[i, {int(chain.joint_q_index[k])}]" \
                    f" + {_number(chain.mimic_offset[k])})"
            lines += [f"    d = {value}", *_prismatic_slide(f"l{k}", chain.joint_axis[k])]
        else:
            assert kind in (FIXED, REVOLUTE)
        lines.append(f"    link_world[i, {k}] = wp.transform(wp.vec3(l{k}px, l{k}py, l{k}pz),"
                     f" wp.quat(l{k}qx, l{k}qy, l{k}qz, l{k}qw))")
    return "\n".join(lines) + "\n"


def _prismatic_slide(link: str, axis: np.ndarray) -> list[str]:
    """Move the link's origin by d along its own axis (rotated into the world by its quaternion)."""
    ax, ay, az = (float(v) for v in axis)
    return [
        f"    slide = wp.quat_rotate(wp.quat({link}qx, {link}qy, {link}qz, {link}qw),"
        f" wp.vec3({_number(ax)}, {_number(ay)}, {_number(az)}) * d)",
        f"    {link}px = {link}px + slide[0]",
        f"    {link}py = {link}py + slide[1]",
        f"    {link}pz = {link}pz + slide[2]",
    ]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "twin" / "kernels"


_LOADED: dict[str, wp.Kernel] = {}


def specialised_fk_kernel(chain: Chain) -> wp.Kernel:
    """The generated kernel for `chain` (cached in memory and on disk)."""
    digest = hashlib.sha256(kernel_source(chain, "fk").encode()).hexdigest()[:16]
    if digest in _LOADED:
        return _LOADED[digest]
    name = f"fk_{digest}"
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.is_file():
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(kernel_source(chain, name))
        temporary.replace(path)  # atomic: concurrent processes never import a half-written file
    spec = importlib.util.spec_from_file_location(f"twin_generated_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no loader for the generated kernel {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _LOADED[digest] = getattr(module, name)
    return _LOADED[digest]


class ChainForward:
    """Batched FK of one chain with its specialised kernel.

    Warp runs a CPU launch on one thread, so on the CPU a large batch is cut into one slice
    per core, each launched from its own Python thread (launches release the GIL).
    """

    _pool: ThreadPoolExecutor | None = None
    min_slice = 2048  # below this, one launch beats the thread hand-off

    def __init__(self, chain: Chain, device: str):
        self.chain = chain
        self.device = device
        self.kernel = specialised_fk_kernel(chain)
        self.workers = (os.cpu_count() or 1) if wp.get_device(device).is_cpu else 1
        self._recorded: dict[tuple, list] = {}

    def launch(self, q: wp.array, base: wp.array, link_world: wp.array) -> None:
        """q (B, n) float32, base (B,) transforms, link_world (B, n_links) transforms, all on the device.

        The launches for a set of arrays are recorded once and replayed after: at batch sizes where one
        launch takes a fraction of a millisecond, Python's argument packing would otherwise show.
        """
        # same addresses, shapes and strides: a replay touches exactly the memory the caller passed
        key = tuple((a.ptr, a.shape, a.strides) for a in (q, base, link_world))
        launches = self._recorded.get(key)
        if launches is None:
            launches = self._record(q, base, link_world)
            if len(self._recorded) > 16:  # arrays come and go: keep the recent few
                self._recorded.pop(next(iter(self._recorded)))
            self._recorded[key] = launches
        if len(launches) == 1:
            launches[0].launch()
            return
        if ChainForward._pool is None:
            ChainForward._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="twin-fk")
        futures = [ChainForward._pool.submit(launch.launch) for launch in launches[:-1]]
        launches[-1].launch()  # the calling thread takes the last slice instead of waiting idle
        for future in futures:
            future.result()

    def _record(self, q: wp.array, base: wp.array, link_world: wp.array) -> list:
        count = q.shape[0]
        slices = min(self.workers, max(1, count // self.min_slice))
        if slices == 1:  # whole arrays: Warp cannot slice one with a zero-size dimension (a robot without joints)
            return [wp.launch(self.kernel, dim=count, inputs=[q, base], outputs=[link_world], device=self.device,
                              record_cmd=True)]
        bounds = np.linspace(0, count, slices + 1).astype(int)
        return [
            wp.launch(self.kernel, dim=int(hi - lo), inputs=[q[lo:hi], base[lo:hi]], outputs=[link_world[lo:hi]],
                      device=self.device, record_cmd=True)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def forward(self, q: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """(B, n) joints -> (B, n_links, 4, 4) transforms, numpy in and out."""
        count = q.shape[0]
        with wp.ScopedDevice(self.device):
            q_device: wp.array = wp.array(np.ascontiguousarray(q, np.float32), dtype=float)
            bases = np.tile(np.eye(4), (count, 1, 1)) if base is None else np.broadcast_to(base, (count, 4, 4))
            base_device: wp.array = wp.array(matrix_to_pose(bases).astype(np.float32), dtype=wp.transform)
            link_world = wp.zeros((count, self.chain.n_links), dtype=wp.transform)
            self.launch(q_device, base_device, link_world)
            return pose_to_matrix(link_world.numpy())
