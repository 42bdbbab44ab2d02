"""Robots and grippers on physics, checked against geometry and mechanics, not against the code's own output: the
sample robots pick a part at their taught pick pose and set it down at the taught place pose (within 5 mm once it
has settled under gravity), a grip with no part within reach is a fault that moves nothing, and a moving link
pushes a part instead of passing through it (box-box penetration by the separating axes, never over 1 mm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import warp as wp
from pxr import Usd
from scipy.spatial.transform import Rotation

from tests.test_physics import COPY_SOLVERS
from twin.physics.gripper import Gripper, part_in_reach
from twin.physics.model import PhysicsModel
from twin.sample_factory import layout
from twin.scenes.robot import PAD_THICKNESS
from twin.sim.physics_robots import GRIP_FAULT, JOINTS
from twin.sim.physics_runtime import POSES
from twin.sim.runtime import Twin

DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(
    not wp.is_cuda_available(), reason="no CUDA device"))]
HALF = layout.PART_SIZE / 2
TICK_STEPS = 8  # physics steps per runtime tick (1/30 s at 1/240 s)
ROBOT1, ROBOT2 = (f"{layout.LINE}/{name}" for name in ("Robot1", "Robot2"))
# Where each robot picks and places (tool0 on the part's top face, taught in the sample layout), and the height of
# the surface the part rests on there: Conveyor2's end, the Assembly table, Conveyor3's start.
SURFACES = {ROBOT1: (layout.BELT_HEIGHT, layout.TABLE_HEIGHT), ROBOT2: (layout.TABLE_HEIGHT, layout.BELT_HEIGHT)}


@pytest.fixture(scope="module", params=DEVICES)
def twin(request, sample_layout):
    """The sample line running on physics (`twin demo --physics`): its robots with their grippers."""
    return Twin(sample_layout, physics=True, device=request.param)


@pytest.fixture(scope="module")
def cell(twin):
    """The physics model of the running sample line and the robots' taught poses; tests run their own states."""
    model = twin.physics.model
    return model, _taught(twin.stage.authored_stage, model)


COPIES = 2


@pytest.fixture(scope="module", params=COPY_SOLVERS)
def copies_cell(request, sample_layout):
    """The sample line with its robots in COPIES copies on each copy solver (tests/test_physics.py), and the robots'
    taught poses."""
    device, mujoco_warp = request.param
    stage = Usd.Stage.Open(str(sample_layout))
    model = PhysicsModel.from_stage(stage, robots=True, copies=COPIES, max_parts=2, device=device,
                                    mujoco_warp=mujoco_warp)
    return model, _taught(stage, model)


def _taught(stage: Usd.Stage, model: PhysicsModel) -> dict[str, dict[str, np.ndarray]]:
    return {robot.path: {name: np.array(stage.GetPrimAtPath(robot.path).GetAttribute(f"twin:pose:{name}").Get())
                         for name in ("above_pick", "pick", "above_place", "place")} for robot in model.robots}


def _state(model: PhysicsModel):
    state = model.new_state()
    for copy in range(model.copies):
        for belt in model.belts:
            state.set_belt_speed(belt, 0.0, copy=copy)
    return state


def _tool(model: PhysicsModel, robot: str, q: np.ndarray) -> np.ndarray:
    geometry = next(r for r in model.robots if r.path == robot)
    return geometry.chain.fk(np.asarray(q)[None], base=geometry.base)[0][geometry.tool]


def _move(model, state, robot: str, start, end, seconds: float, watch=None, copies=(0,)) -> None:
    """Joints from `start` to `end` in straight lines over `seconds`, set once a tick as the runtime does, in each
    of `copies`."""
    ticks = max(1, round(seconds / (TICK_STEPS * model.dt)))
    for tick in range(1, ticks + 1):
        q = start + (end - start) * tick / ticks
        for copy in copies:
            state.set_robot_joints(robot, q, copy=copy)
        model.step(state, TICK_STEPS)
        if watch is not None:
            watch(q)


def _target(robot: str, where: str) -> np.ndarray:
    """The part's centre where the robot's tool0 is taught: under the grip face, resting on the surface there."""
    x, y, _ = layout.ROBOT_TARGETS[robot.rsplit("/", 1)[1]][where]
    return np.array([x, y, SURFACES[robot][where == "place"] + HALF])


# ---------------------------------------------------------------------------- which part a grip takes (geometry)
SUCTION = Gripper("/Robot/tool0", "suction", suction_radius=0.04, stroke=0.0, reach=0.01)
DOWN = np.diag([1.0, -1.0, -1.0, 1.0])  # a tool facing down (+Z to the floor), its jaws across world Y


def _tool_at(x: float, y: float, z: float, yaw: float = 0.0) -> np.ndarray:
    turn = np.eye(4)
    turn[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    tool = turn @ DOWN
    tool[:3, 3] = x, y, z
    return tool


def test_a_suction_pad_takes_the_part_it_sits_on_within_reach():
    parts = np.array([[0.0, 0.0, HALF, 0, 0, 0, 1], [1.0, 0.0, HALF, 0, 0, 0, 1]])  # cubes on the floor
    top = 2 * HALF
    assert part_in_reach(SUCTION, _tool_at(1.0, 0.0, top), parts, 2 * HALF) == 1
    assert part_in_reach(SUCTION, _tool_at(0.0, 0.0, top + 0.009), parts, 2 * HALF) == 0  # 9 mm above: in reach
    assert part_in_reach(SUCTION, _tool_at(0.0, 0.0, top + 0.011), parts, 2 * HALF) is None  # 11 mm: out of reach
    # the pad (radius 4 cm) must lie on the face: its axis up to 10 - 4 cm (+ the 1 cm reach) off the centre
    assert part_in_reach(SUCTION, _tool_at(0.069, 0.0, top), parts, 2 * HALF) == 0
    assert part_in_reach(SUCTION, _tool_at(0.071, 0.0, top), parts, 2 * HALF) is None
    assert part_in_reach(SUCTION, _tool_at(0.5, 0.0, top), parts, 2 * HALF) is None  # between the parts


def test_parallel_jaws_close_on_a_part_no_wider_than_their_stroke():
    part = np.array([[0.0, 0.0, HALF, 0, 0, 0, 1]])
    top = 2 * HALF
    wide, narrow = (Gripper("/Robot/tool0", "parallel", 0.0, stroke, 0.01) for stroke in (0.3, 0.25))
    diagonal = 2 * HALF * math.sqrt(2)  # 0.283 m across the jaws when they meet the cube at 45 degrees
    assert narrow.stroke < diagonal < wide.stroke
    assert part_in_reach(narrow, _tool_at(0.0, 0.0, top), part, 2 * HALF) == 0  # square on: 0.2 m across
    assert part_in_reach(narrow, _tool_at(0.0, 0.0, top, math.pi / 4), part, 2 * HALF) is None
    assert part_in_reach(wide, _tool_at(0.0, 0.0, top, math.pi / 4), part, 2 * HALF) == 0
    # the jaws' centre 6 cm off across them: one jaw (15 cm from that centre) would come down on the part (16 cm)
    assert part_in_reach(wide, _tool_at(0.0, 0.06, top), part, 2 * HALF) is None
    assert part_in_reach(wide, _tool_at(0.0, 0.04, top), part, 2 * HALF) == 0


# ---------------------------------------------------------------------------- the sample robots on physics
@pytest.mark.slow
@pytest.mark.parametrize("robot", [ROBOT1, ROBOT2], ids=["suction", "parallel"])
def test_pick_and_place_sets_the_part_down_at_the_place_pose(cell, robot):
    model, taught = cell
    poses = taught[robot]
    state = _state(model)
    part = state.spawn_part(_target(robot, "pick") + [0.0, 0.0, 0.001])
    state.set_robot_joints(robot, poses["above_pick"], jump=True)
    model.step(state, 60)
    _move(model, state, robot, poses["above_pick"], poses["pick"], 1.0)
    assert state.grip(robot).part == part and state.held(robot) == part
    offsets = []

    def follows(q):  # while held, the part keeps its place under the grip face: carried, not teleported
        tool = _tool(model, robot, q)
        offsets.append(np.linalg.norm(state.part_poses()[0, :3] - (tool[:3, 3] + tool[:3, 2] * HALF)))

    _move(model, state, robot, poses["pick"], poses["above_pick"], 1.0, follows)
    lifted = state.part_poses()[0, 2]
    _move(model, state, robot, poses["above_pick"], poses["above_place"], 1.5, follows)
    _move(model, state, robot, poses["above_place"], poses["place"], 1.0, follows)
    assert lifted > _target(robot, "pick")[2] + 0.3
    assert max(offsets) < 0.005, max(offsets)
    assert state.release(robot) == part and state.held(robot) is None
    _move(model, state, robot, poses["place"], poses["above_place"], 1.0)
    model.step(state, round(1.0 / model.dt))  # settle under gravity
    assert np.linalg.norm(state.part_velocities()[0]) < 0.01
    error = np.linalg.norm(state.part_poses()[0, :3] - _target(robot, "place"))
    assert error < 0.005, (state.part_poses()[0], _target(robot, "place"))


@pytest.mark.slow
def test_a_grip_with_no_part_in_reach_is_a_fault_that_moves_nothing(cell):
    model, taught = cell
    poses = taught[ROBOT1]
    state = _state(model)
    aside = _target(ROBOT1, "pick") - [0.35, 0.0, 0.0]  # on the same belt, out from under the pad
    part = state.spawn_part(aside + [0.0, 0.0, 0.001])
    state.set_robot_joints(ROBOT1, poses["pick"], jump=True)
    model.step(state, 60)
    before = state.part_poses()[0].copy()
    result = state.grip(ROBOT1)
    assert result.part is None and state.held(ROBOT1) is None
    assert result.robot == ROBOT1 and "no part within reach of the suction gripper" in result.fault
    # the robot carries on with its program: to the place pose, opening a gripper that holds nothing, and back
    _move(model, state, ROBOT1, poses["pick"], poses["above_place"], 1.0)
    _move(model, state, ROBOT1, poses["above_place"], poses["place"], 0.5)
    assert state.release(ROBOT1) is None
    _move(model, state, ROBOT1, poses["place"], poses["pick"], 1.0)
    assert np.allclose(state.part_poses()[0, :3], before[:3], atol=0.001)  # the part never moved
    state.remove_part(part)
    again = state.spawn_part(_target(ROBOT1, "pick") + [0.0, 0.0, 0.001])  # a part arrives: the next grip works
    model.step(state, 60)
    assert state.grip(ROBOT1).part == again


SWEPT = np.array([10.2, 0.0, layout.TABLE_HEIGHT + HALF])  # a part on the Assembly table, where _sweep's pad passes


def _sweep(model: PhysicsModel, taught) -> np.ndarray:
    """Robot1's joints, 10 waypoints, for its suction pad (facing down, as when placing) sweeping along the Assembly
    table from x = 10.0 to 10.45 m at the height of a part's middle, through SWEPT."""
    geometry = next(r for r in model.robots if r.path == ROBOT1)
    path = np.tile(_tool(model, ROBOT1, taught[ROBOT1]["place"]), (10, 1, 1))
    path[:, 0, 3], path[:, 1, 3], path[:, 2, 3] = np.linspace(10.0, 10.45, 10), 0.0, layout.TABLE_HEIGHT + 0.12
    solved = geometry.chain.ik(np.linalg.inv(geometry.base) @ path, "tool0", seeds=taught[ROBOT1]["place"][None],
                               device=model.device)
    assert solved.success.all()
    return solved.q


def _box_penetration(a: tuple, b: tuple) -> float:
    """How deep two boxes (centre, rotation, half extents) overlap: the least overlap over the 15 separating axes."""
    (centre_a, rotation_a, half_a), (centre_b, rotation_b, half_b) = a, b
    axes = [*rotation_a.T, *rotation_b.T]
    axes += [np.cross(u, v) for u in rotation_a.T for v in rotation_b.T]
    overlap = math.inf
    for axis in axes:
        norm = np.linalg.norm(axis)
        if norm < 1e-9:
            continue
        axis = axis / norm
        reach = np.abs(rotation_a.T @ axis) @ half_a + np.abs(rotation_b.T @ axis) @ half_b
        overlap = min(overlap, reach - abs(float((centre_b - centre_a) @ axis)))
    return max(overlap, 0.0)


def test_box_penetration_is_the_depth_of_overlap():
    turned = np.array([[math.cos(0.3), -math.sin(0.3), 0], [math.sin(0.3), math.cos(0.3), 0], [0, 0, 1]])
    cube = (np.zeros(3), np.eye(3), np.full(3, 0.1))
    assert _box_penetration(cube, (np.array([0.17, 0.0, 0.0]), np.eye(3), np.full(3, 0.1))) == pytest.approx(0.03)
    assert _box_penetration(cube, (np.array([0.21, 0.0, 0.0]), np.eye(3), np.full(3, 0.1))) == 0.0
    corner = 0.1 * (math.cos(0.3) + math.sin(0.3))  # a turned cube reaches this far along x
    assert _box_penetration(cube, (np.array([0.1 + corner - 0.002, 0.0, 0.0]), turned, np.full(3, 0.1))) == \
        pytest.approx(0.002)


@pytest.mark.slow
def test_a_moving_link_pushes_a_part_instead_of_passing_through_it(cell):
    """Robot1's suction pad sweeps along the Assembly table at the height of a part's middle, through where the
    part stands: the part is pushed ahead, and the pad and the part never overlap by more than 1 mm."""
    model, taught = cell
    sweep = _sweep(model, taught)
    state = _state(model)
    state.spawn_part(SWEPT + [0.0, 0.0, 0.001])
    state.set_robot_joints(ROBOT1, sweep[0], jump=True)
    model.step(state, 60)
    pad_half = np.array([layout.GRIPPERS["Robot1"]["suction_radius"]] * 2 + [PAD_THICKNESS / 2])
    deepest, through = 0.0, 0.0
    for first, second in zip(sweep[:-1], sweep[1:], strict=True):
        for step in range(1, 13):  # every physics step, 0.05 s per waypoint
            q = first + (second - first) * step / 12
            state.set_robot_joints(ROBOT1, q)
            model.step(state, 1)
            tool = _tool(model, ROBOT1, q)
            pad = (tool[:3, :3] @ [0.0, 0.0, -PAD_THICKNESS / 2] + tool[:3, 3], tool[:3, :3], pad_half)
            pose = state.part_poses()[0]
            part = (pose[:3], Rotation.from_quat(pose[3:]).as_matrix(), np.full(3, HALF))
            deepest = max(deepest, _box_penetration(pad, part))
            through = max(through, _box_penetration(pad, (SWEPT, np.eye(3), np.full(3, HALF))))
    moved = state.part_poses()[0, :3] - SWEPT
    assert through > 0.05  # the pad (8 cm wide) sweeps right through where the part stood
    assert moved[0] > 0.15, moved  # pushed ahead of the pad
    assert deepest <= 0.001, deepest


# ---------------------------------------------------------------------------- robots in parallel copies of the line
def test_each_copy_moves_its_own_robot_links_and_pushes_only_its_own_parts(copies_cell):
    """Robot1 stands still in copy 0 while in copy 1 its suction pad sweeps along the Assembly table through where
    a part stands, the same part at the same place in both copies: each copy's links end at the FK poses of that
    copy's joints, copy 1's part is pushed ahead and copy 0's stays put."""
    model, taught = copies_cell
    geometry = next(r for r in model.robots if r.path == ROBOT1)
    sweep = _sweep(model, taught)
    state = _state(model)
    for copy in range(COPIES):
        state.spawn_part(SWEPT + [0.0, 0.0, 0.001], copy=copy)
        state.set_robot_joints(ROBOT1, sweep[0], jump=True, copy=copy)
    model.step(state, 24)
    for q in sweep[1:]:  # 0.05 s per waypoint
        state.set_robot_joints(ROBOT1, q, copy=1)
        model.step(state, 12)
    for copy, q in enumerate((sweep[0], sweep[-1])):
        links, got = geometry.poses(q)[0], state.link_poses(ROBOT1, copy)
        assert np.max(np.linalg.norm(got[:, :3] - links[:, :3, 3], axis=1)) < 0.001, copy  # gravity sags a step
        turned = Rotation.from_quat(got[:, 3:]) * Rotation.from_matrix(links[:, :3, :3]).inv()
        assert np.max(turned.magnitude()) < 0.001, copy
    still, pushed = state.part_poses(0)[0, :3] - SWEPT, state.part_poses(1)[0, :3] - SWEPT
    assert np.max(np.abs(still)) < 0.001, still
    assert pushed[0] > 0.15, pushed  # the pad passes x = 10.45: pushed ahead of it


def test_a_grip_in_one_copy_carries_that_copys_part_only(copies_cell):
    """Robot1 runs from its pick pose to its place pose in both copies; copy 1 has a part under the pad, copy 0 its
    part (the same id) aside on the belt. Copy 1's grip takes its part and sets it down at the place pose within
    5 mm; copy 0's grip is a fault, and its part never moves."""
    model, taught = copies_cell
    poses = taught[ROBOT1]
    state = _state(model)
    aside = _target(ROBOT1, "pick") - [0.35, 0.0, 0.0]  # on the same belt, out from under the pad
    for copy, where in enumerate((aside, _target(ROBOT1, "pick"))):
        assert state.spawn_part(where + [0.0, 0.0, 0.001], copy=copy) == 0
        state.set_robot_joints(ROBOT1, poses["pick"], jump=True, copy=copy)
    model.step(state, 24)
    before = state.part_poses(0)[0].copy()
    missed, gripped = (state.grip(ROBOT1, copy=copy) for copy in range(COPIES))
    assert missed.part is None and "no part within reach of the suction gripper" in missed.fault
    assert gripped.part == 0 and state.held(ROBOT1, copy=1) == 0 and state.held(ROBOT1, copy=0) is None
    _move(model, state, ROBOT1, poses["pick"], poses["above_place"], 0.75, copies=range(COPIES))
    _move(model, state, ROBOT1, poses["above_place"], poses["place"], 0.5, copies=range(COPIES))
    assert state.release(ROBOT1, copy=0) is None and state.release(ROBOT1, copy=1) == 0
    _move(model, state, ROBOT1, poses["place"], poses["above_place"], 0.25, copies=range(COPIES))
    placed = state.part_poses(1)[0]
    assert np.linalg.norm(placed[:3] - _target(ROBOT1, "place")) < 0.005, (placed, _target(ROBOT1, "place"))
    assert np.linalg.norm(state.part_velocities(1)[0]) < 0.05  # resting on the table, not falling
    assert np.allclose(state.part_poses(0)[0, :3], before[:3], atol=0.001)  # copy 0's part never moved


def test_removing_a_held_part_lets_go_only_the_gripper_of_its_copy(copies_cell):
    model, taught = copies_cell
    state = _state(model)
    for copy in range(COPIES):
        state.spawn_part(_target(ROBOT1, "pick") + [0.0, 0.0, 0.001], copy=copy)
        state.set_robot_joints(ROBOT1, taught[ROBOT1]["pick"], jump=True, copy=copy)
    model.step(state, 4)
    assert [state.grip(ROBOT1, copy=copy).part for copy in range(COPIES)] == [0, 0]  # ids are slots per copy
    state.remove_part(0, copy=0)
    assert state.held(ROBOT1, copy=0) is None and state.held(ROBOT1, copy=1) == 0
    assert state.parts(0).tolist() == [] and state.parts(1).tolist() == [0]


def test_robot_calls_name_the_copies_there_are(copies_cell):
    model, taught = copies_cell
    state = model.new_state()
    wrong = f"no copy {COPIES} of the line: the model has copies 0 to {COPIES - 1}"
    with pytest.raises(IndexError, match=wrong):
        state.set_robot_joints(ROBOT1, taught[ROBOT1]["pick"], copy=COPIES)
    for call in (state.grip, state.release, state.held, state.link_poses):
        with pytest.raises(IndexError, match=wrong):
            call(ROBOT1, copy=COPIES)
    with pytest.raises(IndexError, match="no copy -1"):
        state.grip(ROBOT1, copy=-1)
    with pytest.raises(KeyError, match="no robot '/Factory/Nowhere'"):
        state.held("/Factory/Nowhere", copy=1)


# ---------------------------------------------------------------------------- in the running twin
@pytest.mark.slow
def test_in_the_physics_demo_a_robot_carries_the_part_from_pick_to_place_and_reports_a_failed_grip(twin):
    """Robot1 runs its taught route on physics: a grip finding no part is a fault signal and the robot goes on
    empty; the next cycle grips the part at the pick pose, carries it under the grip face to the place pose and
    sets it on the Assembly table. Poses are read as the viewer and the historian get them (the cache), and the
    robot the viewer draws is the one carrying the part."""
    line, cache = twin.physics, twin.cache
    robot = next(robot for robot in line.robots if robot.path == ROBOT1)
    assembly = line.stations[f"{layout.LINE}/Assembly"]
    fault_row, joint_row = cache.signal_row(ROBOT1, GRIP_FAULT), cache.signal_row(ROBOT1, JOINTS)
    poses_row, chain = cache.signal_row(layout.LINE, POSES), robot.program.chain
    base, tool = twin.stage.world_transform(ROBOT1), chain.link_index("tool0")
    drawn_index = [scene.path for scene in twin.robots.robots].index(ROBOT1)
    tick, now = 1.0 / 30.0, line.state.time
    first = line.state.spawn_part(_target(ROBOT1, "pick") + [0.0, 0.0, 0.001])  # waiting at Conveyor2's end
    second, faults, carried, reported = None, [], [], cache.source_time[fault_row]
    for count in range(1, round(19.0 / tick) + 1):
        twin.step(sim_time=now + count * tick)
        elapsed = line.state.time - now
        if first is not None and elapsed >= 1.0:  # the cycle has begun: the part is taken away before the grip
            assert robot.free_at > robot.started > now
            line.state.remove_part(first)
            first = None
        if second is None and elapsed >= 9.0:  # another part arrives while the robot finishes its empty cycle
            second = line.state.spawn_part(_target(ROBOT1, "pick") + [0.0, 0.0, 0.001])
        if np.isfinite(cache.source_time[fault_row]) and cache.source_time[fault_row] != reported:  # a grip
            reported = cache.source_time[fault_row]
            faults.append((cache.source_time[fault_row] - twin.started - now, cache.signal_values(fault_row)[0],
                           cache.status[fault_row], assembly.reserved))
        held = line.state.held(ROBOT1)
        if held is not None:
            flange = chain.fk(cache.signal_values(joint_row)[None], base=base)[0][tool]
            part = cache.signal_values(poses_row).reshape(-1, 7)[held, :3].copy()
            drawn = twin.robots.link_world(drawn_index, "tool0")  # the robot the viewer draws
            carried.append((held, part, flange[:3, 3] + flange[:3, 2] * HALF, drawn[:3, 3] + drawn[:3, 2] * HALF))
    cycle = robot.pick + robot.place + robot.back
    assert [(value, status, reserved) for _, value, status, reserved in faults] == [(1, 0, False), (0, 0, True)]
    assert abs(faults[0][0] - robot.pick) < 2 * tick  # the first grip, at the end of the grip hold: a fault
    assert cycle < faults[1][0] < cycle + robot.pick + 3 * tick  # the robot carried on and gripped next cycle
    assert carried and {held for held, *_ in carried} == {second}
    parts, under_tool = np.array([c[1] for c in carried]), np.array([c[2] for c in carried])
    assert np.linalg.norm(parts[0] - _target(ROBOT1, "pick")) < 0.005  # taken where it lay
    assert np.max(np.linalg.norm(parts - under_tool, axis=1)) < 0.005  # under the grip face all the way
    under_drawn = np.array([c[3] for c in carried])
    assert np.max(np.linalg.norm(parts - under_drawn, axis=1)) < 0.005  # and under the robot the viewer draws
    assert np.max(np.linalg.norm(np.diff(parts, axis=0), axis=1)) < 0.1  # moving with the arm, never jumping
    assert np.max(parts[:, 2]) > _target(ROBOT1, "pick")[2] + 0.3  # lifted over the belt on the way
    assert line.state.held(ROBOT1) is None and assembly.part is not None and assembly.part.body == second
    resting = cache.signal_values(poses_row).reshape(-1, 7)[second, :3]
    assert np.linalg.norm(resting - _target(ROBOT1, "place")) < 0.005  # set down on the Assembly table


def test_a_gripper_robot_counts_a_part_at_its_belt_end_ready_only_where_its_gripper_can_take_it(twin):
    """Robot1's suction pad comes down on Conveyor2's centre line: a part at the end beside it is not ready for
    the robot (which would grip at nothing), though a station taking any part at a belt's end would take it."""
    line = twin.physics
    robot = next(robot for robot in line.robots if robot.path == ROBOT1)
    belt = line.belts[f"{layout.LINE}/Conveyor2"]
    reach = HALF - layout.GRIPPERS["Robot1"]["suction_radius"] + 0.01  # the pad on the part (docs/physics.md)
    ids = np.array([5])
    for across, ready in ((0.0, True), (reach - 0.01, True), (reach + 0.02, False), (-0.13, False), (0.0, True)):
        pose = np.array([[*(_target(ROBOT1, "pick") + [0.0, across, 0.0]), 0.0, 0.0, 0.0, 1.0]])
        assert line._part_at_end(belt, ids, pose, robot) == (5 if ready else None), across
        assert line._part_at_end(belt, ids, pose) == 5  # the rule without a gripper: anywhere across the belt
    assert not robot.out_of_reach  # the last ready part cleared the logged wait
