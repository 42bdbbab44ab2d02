"""check_motion against python-fcl (an independent collision library) and against the cell's geometry.

fcl gets the meshes straight from the layout (each prim's own points and transform), not from the checker,
and robot link poses from the kinematics (tested against Newton elsewhere), so a wrong link frame, a lost
prim or a split triangle in the checker shows up as a disagreement.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import fcl
import httpx
import numpy as np
import pytest
import warp as wp
from pxr import Usd, UsdGeom

import twin
from tests.helpers import serve_app
from twin.core.stage import usd_to_numpy
from twin.kinematics.chain import Chain
from twin.kinematics.usd import read_robot
from twin.physics.collision import MotionChecker, MotionCheckers
from twin.sample_factory.layout import ROBOTS
from twin.server.app import create_app
from twin.sim.runtime import Twin

ROBOT = "/Factory/Line/Robot1"
POSES = {spec.name: spec.poses for spec in ROBOTS}["Robot1"]
TABLE_TOP = "/Factory/Line/Assembly/Top"
NEAR_CONTACT = 1e-3  # metres: within this fcl distance the verdict may differ (float32 against float64)
DEVICES = ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(not wp.is_cuda_available(), reason="no CUDA"))]


@pytest.fixture(scope="module", params=DEVICES)
def checker(request, sample_layout) -> MotionChecker:
    return MotionChecker(Usd.Stage.Open(str(sample_layout)), ROBOT, device=request.param)


def _fcl_object(prim: Usd.Prim, frame_inverse: np.ndarray) -> fcl.CollisionObject:
    mesh = UsdGeom.Mesh(prim)
    points = np.asarray(mesh.GetPointsAttr().Get(), np.float64)
    counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get())
    assert (counts == 3).all(), prim.GetPath()  # the twin authors triangles only
    transform = frame_inverse @ usd_to_numpy(UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(0))
    model = fcl.BVHModel()
    model.beginModel(len(points), len(counts))
    model.addSubModel(points @ transform[:3, :3].T + transform[:3, 3],
                      np.asarray(mesh.GetFaceVertexIndicesAttr().Get(), np.int64).reshape(-1, 3))
    model.endModel()
    return fcl.CollisionObject(model, fcl.Transform())


class FclScene:
    """Robot1's link meshes and every mesh of the cell that is not a robot, as fcl objects."""

    def __init__(self, stage: Usd.Stage, checker: MotionChecker):
        self.checker = checker
        links = read_robot(stage, ROBOT).links
        self.links: dict[str, fcl.CollisionObject] = {}
        for name, path in links.items():
            link_prim = stage.GetPrimAtPath(path)
            inverse = np.linalg.inv(usd_to_numpy(UsdGeom.Xformable(link_prim).ComputeLocalToWorldTransform(0)))
            for visual in [p for p in link_prim.GetChildren() if p.IsA(UsdGeom.Mesh)]:  # tool0 has none
                self.links[name] = _fcl_object(visual, inverse)
        cell = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh) and "/Robot" not in str(p.GetPath())
                and UsdGeom.Imageable(p).ComputeVisibility() != UsdGeom.Tokens.invisible]
        self.cell = fcl.DynamicAABBTreeCollisionManager()
        self.cell.registerObjects([_fcl_object(p, np.eye(4)) for p in cell])
        self.cell.setup()
        bodies = checker.bodies
        # the pairs proved apart are checked here too: a wrong proof shows up as a disagreement
        self.link_pairs = [(checker.chain.link_names[bodies[a].link], None if bodies[b].link < 0
                            else checker.chain.link_names[bodies[b].link])
                           for a, b in checker.pairs + checker.unreachable_pairs]

    def _pose(self, q: np.ndarray) -> None:
        poses = self.checker.chain.fk(q[None], base=self.checker.robot_world)[0]
        for name, obj in self.links.items():
            pose = poses[self.checker.chain.link_index(name)]
            obj.setTransform(fcl.Transform(pose[:3, :3], pose[:3, 3]))

    def collides(self, q: np.ndarray) -> bool:
        self._pose(q)
        for link, other in self.link_pairs:
            if other is None:
                data = fcl.CollisionData()
                self.cell.collide(self.links[link], data, fcl.defaultCollisionCallback)
                if data.result.is_collision:
                    return True
            elif fcl.collide(self.links[link], self.links[other], fcl.CollisionRequest(), fcl.CollisionResult()):
                return True
        return False

    def distance(self, q: np.ndarray) -> float:
        """The least distance over the checked pairs (0 where they touch)."""
        self._pose(q)
        least = np.inf
        for link, other in self.link_pairs:
            if other is None:
                data = fcl.DistanceData()
                self.cell.distance(self.links[link], data, fcl.defaultDistanceCallback)
                found = data.result.min_distance
            else:
                found = fcl.distance(self.links[link], self.links[other], fcl.DistanceRequest(), fcl.DistanceResult())
            least = min(least, max(0.0, found))
        return least


@pytest.fixture(scope="module")
def fcl_scene(sample_layout, checker) -> FclScene:
    return FclScene(Usd.Stage.Open(str(sample_layout)), checker)


def test_agrees_with_fcl_on_1000_random_configurations(checker, fcl_scene):
    chain = checker.chain
    q = np.random.default_rng(7).uniform(np.maximum(chain.lower, -np.pi), np.minimum(chain.upper, np.pi),
                                         (1_000, chain.n_joints))
    ours = checker.collides(q)
    theirs = np.array([fcl_scene.collides(row) for row in q])
    assert 50 < theirs.sum() < 950, "the sample must hold both verdicts for the test to mean anything"
    disagreements = np.flatnonzero(ours != theirs)
    distances = [fcl_scene.distance(q[i]) for i in disagreements]
    assert all(d <= NEAR_CONTACT for d in distances), list(zip(disagreements, distances, strict=True))
    assert len(disagreements) <= 5


def test_a_trajectory_through_the_table_reports_its_first_sample_and_link(checker, fcl_scene):
    """From above the place pose down past it: the wrist meets the assembly table's top between two samples."""
    above, place = np.array(POSES["above_place"]), np.array(POSES["place"])
    trajectory = above + np.linspace(0.0, 1.6, 9)[:, None] * (place - above)  # 8 segments, the last ones too deep
    times = 0.25 * np.arange(9)
    result = checker.check_motion(trajectory, times=times)
    touching = next(s for s in range(9) if fcl_scene.collides(trajectory[s]))  # then 1/100 steps before it
    dense = [touching - 1 + f for f in np.linspace(0.0, 1.0, 101)]
    first = next(p for p in dense if fcl_scene.collides(above + 0.2 * p * (place - above)))
    assert result.collides and result.other == TABLE_TOP and result.link in ("link_5", "link_6")
    assert result.sample == int(first)
    assert abs(result.sample + result.fraction - first) <= 0.02  # 1/100 of a segment, fcl's own sampling
    assert result.time == pytest.approx(0.25 * (result.sample + result.fraction))
    assert fcl_scene.distance(np.array(result.q)) <= NEAR_CONTACT
    assert 0.0 <= result.penetration <= checker.resolution + NEAR_CONTACT
    free = checker.check_motion(trajectory[:2])
    least = min(fcl_scene.distance(trajectory[0]), fcl_scene.distance(trajectory[1]))
    assert not free.collides and least - 1e-4 <= free.min_distance <= least + 0.01  # vertices: never below fcl


def test_batches_and_refusals(checker):
    above, place = np.array(POSES["above_place"]), np.array(POSES["place"])
    batch = np.stack([np.stack([above, place]), np.stack([place, 2 * place - above])])
    results = checker.check_motion(batch, distance=False)
    assert [r.collides for r in results] == [False, True] and results[0].min_distance is None
    with pytest.raises(ValueError, match=r"trajectory must have shape \(T, 6\)"):
        checker.check_motion(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"trajectory\[0\]\[1\]\[2\] is not finite"):
        checker.check_motion([[0.0] * 6, [0.0, 0.0, np.nan, 0.0, 0.0, 0.0]])


def test_concurrent_first_checks_build_each_robot_once(sample_layout):
    """REST runs checks on worker threads: the first calls for a robot share one build, and robots check at once."""
    stage = Usd.Stage.Open(str(sample_layout))
    robots = [f"/Factory/Line/{spec.name}" for spec in ROBOTS][:2]
    checkers = MotionCheckers(stage, robots, device="cpu")
    trajectory = np.zeros((2, 6))
    start = threading.Barrier(4)

    def check(robot: str):
        start.wait()
        return checkers.check_motion(robot, trajectory, distance=False).to_dict(), checkers.checker(robot)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(check, robots * 2))
    for index, robot in enumerate(robots):
        first, again = answers[index], answers[index + len(robots)]
        assert first[1] is again[1]  # built once
        assert first[0] == again[0] == MotionChecker(stage, robot, device="cpu").check_motion(
            trajectory, distance=False).to_dict()
    with pytest.raises(KeyError, match="no robot at /Nowhere"):
        checkers.check_motion("/Nowhere", trajectory)


@pytest.fixture(scope="module")
def served(sample_layout):
    plant = Twin(sample_layout, device="cpu")
    app = create_app(plant, tick_hz=10)
    with serve_app(app) as url, twin.connect(url) as client, httpx.Client(base_url=url, timeout=60) as rest:
        yield {"client": client, "rest": rest}


@pytest.mark.slow
def test_rest_and_sdks_answer_as_in_process(served, sample_layout):
    above, place = np.array(POSES["above_place"]), np.array(POSES["place"])
    batch = np.stack([np.stack([above, place]), np.stack([place, 2 * place - above])])
    expected = [r.to_dict() for r in MotionChecker(Usd.Stage.Open(str(sample_layout)), ROBOT, device="cpu")
                .check_motion(batch, times=[0.0, 1.5])]
    assert [r.to_dict() for r in served["client"].check_motion(ROBOT, batch, times=[0.0, 1.5])] == expected
    with twin.open(sample_layout, device="cpu") as local:
        assert [r.to_dict() for r in local.check_motion(ROBOT, batch, times=[0.0, 1.5])] == expected
        assert local.check_motion(ROBOT, batch[1]).to_dict() == expected[1] | {"time": expected[1]["time"] / 1.5}
        with pytest.raises(twin.InvalidRequestError, match="trajectory must have shape"):
            local.check_motion(ROBOT, np.zeros((2, 7)))
    single = served["rest"].post("/api/robots/check_motion", json={"robot": ROBOT, "trajectory": batch[1].tolist()})
    assert single.status_code == 200 and single.json()["link"] == expected[1]["link"]


@pytest.mark.slow
def test_bad_requests_answer_422_naming_the_field(served):
    rest = served["rest"]

    def post(body: str):
        return rest.post("/api/robots/check_motion", content=body, headers={"content-type": "application/json"})

    wrong = post(json.dumps({"robot": ROBOT, "trajectory": [[0.0] * 5] * 2}))
    assert wrong.status_code == 422 and "trajectory must have shape (T, 6)" in wrong.json()["detail"]
    nan = post(json.dumps({"robot": ROBOT, "trajectory": [[0, 0, float("nan"), 0, 0, 0]]}))
    assert nan.status_code == 422 and "trajectory" in json.dumps(nan.json()["detail"])
    huge = post(json.dumps({"robot": ROBOT, "trajectory": [[[0.0] * 6] * 101] * 100, "distance": False}))
    assert huge.status_code == 422 and "trajectory: at most 10,000 samples" in huge.json()["detail"]
    far = post(json.dumps({"robot": ROBOT, "trajectory": [[-3.0] * 6, [3.0] * 6] * 50, "distance": False}))
    assert far.status_code == 422 and "interpolated configurations" in far.json()["detail"]
    many = post(json.dumps({"robot": ROBOT, "trajectory": [[0.0] * 6] * 201}))
    assert many.status_code == 422 and "at most 200 samples per request with distance" in many.json()["detail"]
    times = post(json.dumps({"robot": ROBOT, "trajectory": [[0.0] * 6] * 2, "times": [1.0, 0.0]}))
    assert times.status_code == 422 and "times must be" in times.json()["detail"]
    missing = post(json.dumps({"robot": "/Factory/Nope", "trajectory": [0.0] * 6}))
    assert missing.status_code == 404 and "no robot at /Factory/Nope" in missing.json()["detail"]
    with pytest.raises(twin.InvalidRequestError, match="at most 10,000 samples"):
        served["client"].check_motion(ROBOT, np.zeros((10_001, 6)), distance=False)


def _box(stage: Usd.Stage, path: str, center: np.ndarray, size: float, *, closed: bool) -> None:
    """A box of `size` metres around `center`: a Cube gprim (closed), or a Mesh without its top face (open)."""
    meters = UsdGeom.GetStageMetersPerUnit(stage)
    if closed:
        box = UsdGeom.Cube.Define(stage, path)
        box.CreateSizeAttr(size / meters)
    else:
        box = UsdGeom.Mesh.Define(stage, path)
        corners = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
        box.CreatePointsAttr([tuple(size / meters * c for c in corner) for corner in corners])
        quads = [[0, 1, 3, 2], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]  # no +z face: open
        box.CreateFaceVertexCountsAttr([4] * len(quads))
        box.CreateFaceVertexIndicesAttr([i for quad in quads for i in quad])
    box.AddTranslateOp().Set(tuple(float(v) / meters for v in center))


@pytest.mark.parametrize("device", DEVICES)
def test_a_link_wholly_inside_a_closed_solid_meets_it(sample_layout, device):
    """The tool flange inside a closed box crosses no surface, yet collides; inside a box open at the top it
    does not (an open mesh bounds no volume)."""
    stage = Usd.Stage.Open(str(sample_layout))
    stage.SetEditTarget(stage.GetSessionLayer())  # the layout file's layer stays as it is for other tests
    q = np.array([POSES["home"], POSES["above_place"]])
    chain = Chain.from_usd(stage, ROBOT)
    base = usd_to_numpy(UsdGeom.Xformable(stage.GetPrimAtPath(ROBOT)).ComputeLocalToWorldTransform(0))
    flange = chain.fk(q, base=base)[:, chain.link_index("link_6")]
    _box(stage, "/Swallow", flange[0][:3, 3], 0.4, closed=True)
    _box(stage, "/OpenBox", flange[1][:3, 3], 0.4, closed=False)
    checker = MotionChecker(stage, ROBOT, device=device)
    link_6 = next(b for b in checker.bodies if b.link == checker.chain.link_index("link_6"))
    for pose in flange:  # wholly inside: every vertex within the box around the link's origin, 2 cm clear
        assert np.all(np.abs(link_6.points @ pose[:3, :3].T) < 0.18)
    assert checker.bodies[checker.pairs[0][0]] is link_6 and checker.pairs[0][1] == len(checker.bodies) - 1
    faces = checker.contacts(q)
    assert faces[0, 0] >= 0 and checker.cell_faces_prim[faces[0, 0]] == "/Swallow"
    assert faces[1, 0] == -1
    result = checker.check_motion(q[0])
    assert result.collides and result.link == "link_6" and result.other == "/Swallow"


@pytest.mark.parametrize("device", DEVICES)
def test_a_link_turned_by_one_joint_is_checked_only_where_its_sweep_meets_the_cell(sample_layout, device):
    """link_1 turns with joint 1 alone, and no cell geometry comes within its sweep: its pair with the cell is
    proved apart and dropped (fcl checks it above). A small box put where link_1's farthest point passes half a
    turn away brings the pair back, and turning joint 1 by half a turn meets it."""
    stage = Usd.Stage.Open(str(sample_layout))
    stage.SetEditTarget(stage.GetSessionLayer())
    plain = MotionChecker(stage, ROBOT, device=device)
    link_1 = next(k for k, b in enumerate(plain.bodies) if b.link == plain.chain.link_index("link_1"))
    cell = len(plain.bodies) - 1
    assert (link_1, cell) in plain.unreachable_pairs and (link_1, cell) not in plain.pairs
    chain = plain.chain
    rest = chain.fk(plain._rest_q, base=plain.robot_world)[0]
    axis = rest[chain.link_index("link_1")][:3, :3] @ chain.joint_axis[chain.link_index("link_1")]
    origin = rest[chain.link_index("link_1")][:3, 3]
    points = plain.bodies[link_1].points @ rest[chain.link_index("link_1")][:3, :3].T + origin
    radial = (points - origin) - np.outer((points - origin) @ axis, axis)
    farthest = int(np.argmax(np.linalg.norm(radial, axis=1)))
    _box(stage, "/InTheSweep", points[farthest] - 2 * radial[farthest], 0.05, closed=True)  # mirrored in the axis
    checker = MotionChecker(stage, ROBOT, device=device)
    assert (link_1, cell) in checker.pairs and (link_1, cell) not in checker.unreachable_pairs
    turned = plain._rest_q.copy()
    turned[chain.joint_q_index[chain.link_index("link_1")]] += np.pi
    assert not checker.collides(plain._rest_q)[0]
    result = checker.check_motion(turned)
    assert result.collides and result.link == "link_1" and result.other == "/InTheSweep"
