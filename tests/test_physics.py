"""Physics on Newton checked against mechanics, not against its own output: belt transit L / v, free fall
sqrt(2h / g), accumulation at a stopper without interpenetration, transfer between belts into a bin."""

from __future__ import annotations

import math

import numpy as np
import pytest
import warp as wp

from twin.core.errors import LayoutError
from twin.physics.model import GRAVITY, PhysicsModel
from twin.physics.shapes import read_shapes
from twin.scenes import add_conveyor, add_sink, new_layout
from twin.scenes.collision import add_collision_boxes
from twin.scenes.conveyor import add_stopper
from twin.scenes.meshes import define_xform, pose

BELT_HEIGHT = 0.75
PART = 0.2
FIRST, SECOND, LOOSE = "/Factory/First", "/Factory/Second", "/Factory/Loose"
FIRST_LENGTH, SECOND_START, SECOND_LENGTH = 3.0, 3.02, 2.0  # a 2 cm transfer gap between the belts
STOPPER_AT = 2.5  # metres along the first belt
SINK_X = SECOND_START + SECOND_LENGTH + 0.5
LOOSE_Y = 3.0  # a third belt, away from the others, for the transit time
DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(
    not wp.is_cuda_available(), reason="no CUDA device"))]


def _layout(path):
    """Two belts end to end with a stopper on the first and a bin after the second, a lone belt beside them."""
    stage = new_layout(path)
    define_xform(stage, "/Factory/Floor")
    add_collision_boxes(stage, "/Factory/Floor/Collision", [("Slab", (12.0, 8.0, 0.1), (3.0, 0.0, -0.05))])
    for conveyor, start, length in ((FIRST, (0.0, 0.0), FIRST_LENGTH), (SECOND, (SECOND_START, 0.0), SECOND_LENGTH),
                                    (LOOSE, (0.0, LOOSE_Y), 4.0)):
        add_conveyor(stage, conveyor, pose(*start), length=length, width=0.5, belt_height=BELT_HEIGHT, capacity=8,
                     speed=0.35)
    add_stopper(stage, stage.GetPrimAtPath(FIRST), STOPPER_AT)
    add_sink(stage, "/Factory/Sink", pose(SINK_X, 0.0), height=BELT_HEIGHT)
    return stage


@pytest.fixture(scope="module", params=DEVICES)
def model(request, tmp_path_factory):
    stage = _layout(tmp_path_factory.mktemp("physics") / "line.usda")
    return PhysicsModel.from_stage(stage, device=request.param, max_parts=8, part_size=PART)


def _on_belt(x: float, y: float = 0.0) -> tuple[float, float, float]:
    return (x, y, BELT_HEIGHT + PART / 2 + 0.001)


def test_layout_shapes_become_belts_stoppers_and_static_boxes(tmp_path):
    shapes = read_shapes(_layout(tmp_path / "line.usda"))
    assert [belt.owner for belt in shapes.belts] == [FIRST, SECOND, LOOSE]
    assert [stopper.owner for stopper in shapes.stoppers] == [f"{FIRST}/Stopper"]
    belt = shapes.belts[0]
    assert belt.centre[2] + belt.half_extents[2] == pytest.approx(BELT_HEIGHT)
    assert belt.half_extents[0] * 2 == pytest.approx(FIRST_LENGTH)
    assert belt.speed == pytest.approx(0.35)
    assert len([box for box in shapes.static if box.path.startswith("/Factory/Sink")]) == 5  # floor and 4 walls


def test_unsupported_collision_shape_is_a_layout_error(tmp_path):
    from pxr import UsdGeom, UsdPhysics

    stage = _layout(tmp_path / "line.usda")
    UsdPhysics.CollisionAPI.Apply(UsdGeom.Sphere.Define(stage, "/Factory/Floor/Ball").GetPrim())
    with pytest.raises(LayoutError, match="/Factory/Floor/Ball: collision shape Sphere"):
        read_shapes(stage)


@pytest.mark.parametrize(("up", "meters", "said"), [("Y", 1.0, "Y up with 1 m"), ("Z", 0.01, "Z up with 0.01 m")])
def test_a_layout_not_z_up_in_metres_is_refused_not_run_wrong(tmp_path, up, meters, said):
    from pxr import UsdGeom

    stage = _layout(tmp_path / "line.usda")
    UsdGeom.SetStageUpAxis(stage, up)
    UsdGeom.SetStageMetersPerUnit(stage, meters)
    with pytest.raises(LayoutError, match=f"physics takes a Z-up layout in metres.*this stage is {said} per unit"):
        read_shapes(stage)


@pytest.fixture(params=["mujoco loop", "newton exchange"])
def transit_model(request, model, tmp_path):
    """The CPU's tight MuJoCo loop, and Newton's per-step exchange (the path CUDA takes) on the same device."""
    if request.param == "mujoco loop" or model.device != "cpu":
        return model
    return PhysicsModel.from_stage(_layout(tmp_path / "line.usda"), max_parts=8, part_size=PART, cpu_loop=False)


def test_part_on_belt_arrives_after_length_over_speed(transit_model):
    model = transit_model
    state = model.new_state()
    speed = 0.8
    state.set_belt_speed(LOOSE, speed)
    start = PART / 2  # the part's trailing face on the belt's start
    state.spawn_part(_on_belt(start, LOOSE_Y))
    travel = 4.0 - PART  # until its leading face reaches the belt's end
    model.step(state, int(0.95 * travel / speed / model.dt))
    while state.part_poses()[0, 0] < start + travel:
        model.step(state)
    assert state.time == pytest.approx(travel / speed, rel=0.02)


def test_dropped_part_lands_after_free_fall_time(model):
    state = model.new_state()
    height = 0.5  # the part's bottom above the floor slab's top (z = 0)
    state.spawn_part((8.0, 2.0, height + PART / 2))
    fall = math.sqrt(2 * height / GRAVITY)
    model.step(state, int(0.8 * fall / model.dt))
    while state.part_poses()[0, 2] - PART / 2 > 0.0:  # until its bottom reaches the floor
        model.step(state)
    assert abs(state.time - fall) <= model.dt
    model.step(state, round(0.5 / model.dt))
    assert state.part_poses()[0, 2] == pytest.approx(PART / 2, abs=0.001)  # it rests on the floor, not in it


@pytest.mark.slow
def test_parts_accumulate_at_a_raised_stopper_without_interpenetration(model):
    state = model.new_state()
    state.set_belt_speed(FIRST, 0.35)
    for x in (0.2, 0.5, 0.8, 1.1, 1.4):
        state.spawn_part(_on_belt(x))
    model.step(state, round(6.0 / model.dt))
    xs = np.sort(state.part_poses()[:, 0])
    gaps = np.diff(xs) - PART
    assert np.all(gaps >= -0.001), gaps  # no more than 1 mm of penetration between parts
    assert STOPPER_AT - (xs[-1] + PART / 2) >= -0.001  # nor into the stopper
    assert np.all(gaps <= 0.005) and STOPPER_AT - (xs[-1] + PART / 2) <= 0.005  # accumulated: touching
    model.step(state, round(1.0 / model.dt))
    held = np.sort(state.part_poses()[:, 0])
    assert np.all(np.abs(held - xs) < 0.005)  # held for a second (rocking by mm) while the belt runs beneath


@pytest.mark.slow
def test_parts_transfer_between_belts_and_fall_into_the_bin(model):
    state = model.new_state()
    state.set_stopper(f"{FIRST}/Stopper", raised=False)
    for belt in (FIRST, SECOND):
        state.set_belt_speed(belt, 0.5)
    for x in (0.2, 0.8, 1.4):
        state.spawn_part(_on_belt(x))
    model.step(state, round(5.5 / model.dt))
    assert np.all(state.part_poses()[:, 0] > STOPPER_AT + PART)  # the lowered stopper let them pass
    assert np.any(state.part_poses()[:, 0] > SECOND_START + PART)  # onto the second belt
    model.step(state, round(6.0 / model.dt))
    poses = state.part_poses()
    inner = 0.8 / 2 - 0.03  # the bin's inner half width
    assert np.all(np.abs(poses[:, 0] - SINK_X) < inner) and np.all(np.abs(poses[:, 1]) < inner), poses
    assert np.all(poses[:, 2] < BELT_HEIGHT - 0.05)  # below the rim: inside the bin
    assert np.all(np.linalg.norm(state.part_velocities(), axis=1) < 0.05)  # at rest


def test_spawn_and_remove_reuse_the_pool_and_name_bad_input(model):
    state = model.new_state()
    parts = [state.spawn_part((8.0, -2.0 + 0.5 * i, PART)) for i in range(model.max_parts)]
    with pytest.raises(RuntimeError, match="all 8 parts are in play"):
        state.spawn_part((8.0, 0.0, PART))
    state.remove_part(parts[3])
    assert state.spawn_part((9.0, 0.0, PART)) == parts[3]
    with pytest.raises(KeyError, match="no belt '/Factory/Nowhere'"):
        state.set_belt_speed("/Factory/Nowhere", 1.0)
    with pytest.raises(ValueError, match="three finite numbers"):
        state.spawn_part((0.0, float("nan"), 1.0))


@pytest.mark.slow
def test_sample_line_drops_its_finished_parts_into_the_sink_bin(sample_layout):
    from twin.sample_factory import layout
    from twin.scenes import open_layout

    model = PhysicsModel.from_stage(open_layout(sample_layout), max_parts=2)
    assert model.part_size == layout.PART_SIZE  # from the conveyors' twin:partLength
    last = layout.CONVEYORS[-1]
    state = model.new_state()
    state.spawn_part(_on_belt(last.start[0] + 2.5))
    model.step(state, round(4.0 / model.dt))
    x, y, z = state.part_poses()[0, :3]
    assert abs(x - layout.SINK[0]) < 0.4 - 0.03 and abs(y - layout.SINK[1]) < 0.4 - 0.03 and z < BELT_HEIGHT - 0.05


COPIES = 3
# The copies on MuJoCo's C solver (taking turns), on CUDA (worlds of one model stepped together by MuJoCo Warp),
# and that same multi-world path with MuJoCo Warp on the CPU, slowly, so that it is checked without a GPU too.
COPY_SOLVERS = [pytest.param(("cpu", False), id="cpu"),
                pytest.param(("cuda:0", False), id="cuda:0", marks=DEVICES[1].marks),
                pytest.param(("cpu", True), id="cpu-mujoco-warp", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=COPY_SOLVERS)
def copies_model(request, tmp_path_factory):
    device, mujoco_warp = request.param
    stage = _layout(tmp_path_factory.mktemp("copies") / "line.usda")
    return PhysicsModel.from_stage(stage, device=device, max_parts=2, part_size=PART, copies=COPIES,
                                   mujoco_warp=mujoco_warp)


def test_parts_at_one_place_in_every_copy_fall_as_if_alone(copies_model):
    """Copies never touch: parts spawned at the same place in every copy each land after sqrt(2h / g) and rest
    where they fell, as a lone part does, instead of pushing each other apart."""
    model = copies_model
    state = model.new_state()
    height, where = 0.5, (8.0, 2.0)
    for copy in range(model.copies):
        state.spawn_part((*where, height + PART / 2), copy=copy)
    fall = math.sqrt(2 * height / GRAVITY)
    model.step(state, int(0.8 * fall / model.dt))
    landed: list[float | None] = [None] * model.copies
    while None in landed:
        for copy in range(model.copies):
            if landed[copy] is None and state.part_poses(copy)[0, 2] - PART / 2 <= 0.0:
                landed[copy] = state.time
        assert state.time < 2 * fall, landed
        model.step(state)
    assert all(abs(time - fall) <= model.dt for time in landed), (landed, fall)
    model.step(state, round(0.5 / model.dt))
    for copy in range(model.copies):
        assert state.part_poses(copy)[0, :3] == pytest.approx((*where, PART / 2), abs=0.001)


def test_each_copy_carries_its_part_at_its_own_belt_speed(copies_model):
    model = copies_model
    state = model.new_state()
    speeds, seconds, start = (0.5, 0.0, 0.25), 1.5, 0.5
    for copy, speed in enumerate(speeds):
        state.set_belt_speed(LOOSE, speed, copy=copy)
        state.spawn_part(_on_belt(start, LOOSE_Y), copy=copy)
    model.step(state, round(seconds / model.dt))
    for copy, speed in enumerate(speeds):
        travelled = state.part_poses(copy)[0, 0] - start
        # within 5 %: the part starts at rest and friction brings it to the belt's speed within a tenth of a second
        assert abs(travelled - speed * seconds) <= 0.05 * speed * seconds + 0.001, (copy, travelled)


def test_copies_name_bad_input(copies_model, tmp_path):
    state = copies_model.new_state()
    with pytest.raises(IndexError, match=f"no copy {COPIES} of the line: the model has copies 0 to {COPIES - 1}"):
        state.spawn_part((8.0, 0.0, PART), copy=COPIES)
    with pytest.raises(IndexError, match="no copy -1"):
        state.part_poses(-1)
    with pytest.raises(KeyError, match="no part 0 in play in copy 1"):
        state.remove_part(0, copy=1)
    with pytest.raises(ValueError, match="copies must be a whole number >= 1, got 0"):
        PhysicsModel.from_stage(_layout(tmp_path / "line.usda"), part_size=PART, copies=0)
