"""Warp kernels of the line simulation: one thread runs one variant's discrete-event simulation.

Each thread advances its own clock from event to event (a station finishing, failing or being
repaired, a robot reaching its grip or release, a part reaching a belt's end, an arrival), moves
every part that can move at that instant, and books the time since the previous event to each
station's state. Events are found by scanning the line's few elements, which is cheap next to the
thousands of independent variants a launch runs side by side.

Semantics (docs/line-model.md; tests/test_line_rules.py, and the SimPy reference in tests/line_reference.py):
- an element holds parts first in, first out; a part leaves when it is ready and a downstream
  element has room; `twin:next` order decides (first free, or round robin);
- parts move one at a time, the part that was ready first going first (a push before a robot's pull,
  then element order, breaks ties), so a merge serves its feeders first come, first served;
- an accumulating belt delivers a part `(length - partLength)/speed` after it entered, never sooner than
  `pitch/speed` after the part ahead left, and accepts a part `pitch/speed` after the previous one;
- a station fails only while working (time to failure counts working time), scraps a finished
  part with `scrapRate`, and holds a finished part (blocked) until it can leave;
- a robot at home starts a cycle when a part is ready upstream and a place downstream is free; it
  reserves both, takes the part after `pickTime`, puts it down `placeTime` later, and is home again
  after `returnTime`.
"""

from __future__ import annotations

import warp as wp

from .model import BUFFER, CONVEYOR, ROBOT, SINK, SOURCE, STATION

F64 = wp.float64
INF = wp.constant(wp.float64(1.0e30))
EPS = wp.constant(wp.float64(1.0e-9))
MAX_EVENTS = wp.constant(200_000_000)  # per launch and variant: a guard against a model that cannot advance

# Parameter columns (model.PARAMETERS order).
P_INTERARRIVAL = wp.constant(0)
P_ARRIVAL_SPREAD = wp.constant(1)
P_LENGTH = wp.constant(3)
P_SPEED = wp.constant(4)
P_PITCH = wp.constant(5)
P_CYCLE = wp.constant(6)
P_CYCLE_SPREAD = wp.constant(7)
P_MTBF = wp.constant(8)
P_MTTR = wp.constant(9)
P_SCRAP = wp.constant(10)
P_SETUP = wp.constant(11)
P_SETUP_EVERY = wp.constant(12)
P_PICK = wp.constant(13)
P_PLACE = wp.constant(14)
P_RETURN = wp.constant(15)
P_PART_LENGTH = wp.constant(16)

K_SOURCE = wp.constant(SOURCE)
K_CONVEYOR = wp.constant(CONVEYOR)
K_BUFFER = wp.constant(BUFFER)
K_STATION = wp.constant(STATION)
K_ROBOT = wp.constant(ROBOT)
K_SINK = wp.constant(SINK)

# Station phases; robots use HOME (0) and the three moves.
EMPTY = wp.constant(0)
WORKING = wp.constant(1)
DOWN = wp.constant(2)
DONE = wp.constant(3)
SETUP = wp.constant(4)
HOME = wp.constant(0)
APPROACH = wp.constant(1)
CARRY = wp.constant(2)
RETURN = wp.constant(3)

# Booked states (KPIs and the viewer's colours): STATES in simulation.py.
S_IDLE = wp.constant(0)
S_WORKING = wp.constant(1)
S_BLOCKED = wp.constant(2)
S_STARVED = wp.constant(3)
S_DOWN = wp.constant(4)
S_SETUP = wp.constant(5)
N_STATES = 6

# Playback log records.
LOG_ENTER = wp.constant(0)  # part `value` entered `element`
LOG_SCRAP = wp.constant(1)  # part `value` was scrapped at `element`
LOG_STATE = wp.constant(2)  # `element` is now in booked state `value`


@wp.struct
class LineArrays:
    kind: wp.array(dtype=wp.int32)  # per element
    routing: wp.array(dtype=wp.int32)
    distribution: wp.array(dtype=wp.int32)
    successor_start: wp.array(dtype=wp.int32)  # CSR: successors of e are successors[start[e]:start[e+1]]
    successors: wp.array(dtype=wp.int32)
    predecessor_start: wp.array(dtype=wp.int32)
    predecessors: wp.array(dtype=wp.int32)
    parameters: wp.array3d(dtype=wp.float64)  # (variant, element, column)
    capacity: wp.array2d(dtype=wp.int32)  # (variant, element)
    n_elements: int
    queue_size: int


@wp.struct
class LineState:
    clock: wp.array(dtype=wp.float64)  # per variant
    wip: wp.array(dtype=wp.int32)
    next_part: wp.array(dtype=wp.int32)
    failed: wp.array(dtype=wp.int32)  # 1 when a variant hit the event guard
    count: wp.array2d(dtype=wp.int32)  # (variant, element) from here on
    reserved: wp.array2d(dtype=wp.int32)
    claimed: wp.array2d(dtype=wp.int32)
    head: wp.array2d(dtype=wp.int32)
    phase: wp.array2d(dtype=wp.int32)
    turn: wp.array2d(dtype=wp.int32)  # round-robin pointer
    since_setup: wp.array2d(dtype=wp.int32)
    robot_from: wp.array2d(dtype=wp.int32)
    robot_to: wp.array2d(dtype=wp.int32)
    booked: wp.array2d(dtype=wp.int32)  # the state last booked, for the playback log
    front_ready: wp.array2d(dtype=wp.float64)
    waiting_since: wp.array2d(dtype=wp.float64)  # scratch of move_first_ready: the ready movers, sorted
    movers: wp.array2d(dtype=wp.int32)
    event_time: wp.array2d(dtype=wp.float64)
    last_entry: wp.array2d(dtype=wp.float64)
    last_leave: wp.array2d(dtype=wp.float64)
    remaining: wp.array2d(dtype=wp.float64)
    to_failure: wp.array2d(dtype=wp.float64)
    work_start: wp.array2d(dtype=wp.float64)
    rng: wp.array2d(dtype=wp.uint32)
    queue_entry: wp.array3d(dtype=wp.float64)  # (variant, element, slot)
    queue_birth: wp.array3d(dtype=wp.float64)
    queue_part: wp.array3d(dtype=wp.int32)


@wp.struct
class LineTotals:
    """What the KPIs are made of, summed over the measuring window (after the warm-up)."""

    state_time: wp.array3d(dtype=wp.float64)  # (variant, element, booked state)
    finished: wp.array2d(dtype=wp.int32)  # parts a station or robot completed, scrap included
    scrapped: wp.array2d(dtype=wp.int32)
    released: wp.array(dtype=wp.int32)  # parts the sources let in
    out: wp.array(dtype=wp.int32)  # parts the sinks received
    wip_time: wp.array(dtype=wp.float64)  # integral of work in progress
    lead_time: wp.array(dtype=wp.float64)  # sum over parts out


@wp.struct
class PlaybackLog:
    variant: int  # the variant to record, -1 for none
    count: wp.array(dtype=wp.int32)  # entries written (may exceed the capacity: then the log is cut)
    time: wp.array(dtype=wp.float64)
    element: wp.array(dtype=wp.int32)
    what: wp.array(dtype=wp.int32)
    value: wp.array(dtype=wp.int32)


# ---------------------------------------------------------------- random numbers
@wp.func
def uniform(s: LineState, v: int, e: int) -> wp.float64:
    """PCG-style hash stream per (variant, element): the same numbers on every device."""
    state = s.rng[v, e] * wp.uint32(747796405) + wp.uint32(2891336453)
    s.rng[v, e] = state
    word = ((state >> ((state >> wp.uint32(28)) + wp.uint32(4))) ^ state) * wp.uint32(277803737)
    word = (word >> wp.uint32(22)) ^ word
    return (F64(word) + F64(0.5)) / F64(4294967296.0)


@wp.func
def exponential(s: LineState, v: int, e: int, mean: wp.float64) -> wp.float64:
    return -mean * wp.log(uniform(s, v, e))


@wp.func
def standard_normal(s: LineState, v: int, e: int) -> wp.float64:
    u1 = uniform(s, v, e)
    u2 = uniform(s, v, e)
    return wp.sqrt(F64(-2.0) * wp.log(u1)) * wp.cos(F64(6.283185307179586) * u2)


@wp.func
def duration(s: LineState, v: int, e: int, distribution: int, mean: wp.float64, spread: wp.float64) -> wp.float64:
    """A random duration of `mean` and coefficient of variation `spread` (normal is cut at 10 % of the mean)."""
    if distribution == 2:
        return exponential(s, v, e, mean)
    if spread <= F64(0.0) or distribution == 0:
        return mean
    if distribution == 3:
        sigma2 = wp.log(F64(1.0) + spread * spread)
        return wp.exp(wp.log(mean) - F64(0.5) * sigma2 + wp.sqrt(sigma2) * standard_normal(s, v, e))
    return wp.max(mean * (F64(1.0) + spread * standard_normal(s, v, e)), F64(0.1) * mean)


# ---------------------------------------------------------------- bookkeeping
@wp.func
def record(log: PlaybackLog, v: int, t: wp.float64, e: int, what: int, value: int):
    if v != log.variant:
        return
    slot = wp.atomic_add(log.count, 0, 1)
    if slot < log.time.shape[0]:
        log.time[slot] = t
        log.element[slot] = e
        log.what[slot] = what
        log.value[slot] = value


@wp.func
def time_to_failure(m: LineArrays, s: LineState, v: int, e: int) -> wp.float64:
    mtbf = m.parameters[v, e, P_MTBF]
    if mtbf <= F64(0.0):
        return INF
    return exponential(s, v, e, mtbf)


@wp.func
def transit(m: LineArrays, v: int, e: int) -> wp.float64:
    if m.kind[e] == K_CONVEYOR:
        return (m.parameters[v, e, P_LENGTH] - m.parameters[v, e, P_PART_LENGTH]) / m.parameters[v, e, P_SPEED]
    return F64(0.0)


@wp.func
def headway(m: LineArrays, v: int, e: int) -> wp.float64:
    if m.kind[e] == K_CONVEYOR:
        return m.parameters[v, e, P_PITCH] / m.parameters[v, e, P_SPEED]
    return F64(0.0)


@wp.func
def has_room(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    kind = m.kind[e]
    if kind == K_SINK:
        return 1
    if kind == K_STATION:
        if s.phase[v, e] == EMPTY and s.count[v, e] + s.reserved[v, e] == 0:
            return 1
        return 0
    if kind == K_CONVEYOR or kind == K_BUFFER:
        if s.count[v, e] + s.reserved[v, e] >= m.capacity[v, e]:
            return 0
        if s.count[v, e] > 0 and t + EPS < s.last_entry[v, e] + headway(m, v, e):
            return 0
        return 1
    return 0  # sources take nothing; robots pull rather than being pushed to


@wp.func
def choose_downstream(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    """A successor with room, by the element's routing rule; -1 when all are full. Robots pull, so skip them."""
    first = m.successor_start[e]
    n = m.successor_start[e + 1] - first
    offset = int(0)
    if m.routing[e] == 1:
        offset = s.turn[v, e]
    for k in range(n):
        index = (offset + k) % n
        target = m.successors[first + index]
        if m.kind[target] != K_ROBOT and has_room(m, s, v, target, t) == 1:
            if m.routing[e] == 1:
                s.turn[v, e] = (index + 1) % n
            return target
    return -1


@wp.func
def start_work(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64):
    s.remaining[v, e] = duration(s, v, e, m.distribution[e], m.parameters[v, e, P_CYCLE],
                                 m.parameters[v, e, P_CYCLE_SPREAD])
    s.phase[v, e] = WORKING
    s.work_start[v, e] = t
    s.event_time[v, e] = t + wp.min(s.remaining[v, e], s.to_failure[v, e])


@wp.func
def accept(m: LineArrays, s: LineState, totals: LineTotals, log: PlaybackLog, v: int, e: int, t: wp.float64,
           warmup: wp.float64, birth: wp.float64, part: int):
    """Part `part` (released at `birth`) arrives at element `e` at time `t`."""
    kind = m.kind[e]
    record(log, v, t, e, LOG_ENTER, part)
    if kind == K_SINK:
        s.wip[v] = s.wip[v] - 1
        if t >= warmup:
            totals.out[v] = totals.out[v] + 1
            totals.lead_time[v] = totals.lead_time[v] + (t - birth)
        return
    slot = (s.head[v, e] + s.count[v, e]) % m.queue_size
    s.queue_entry[v, e, slot] = t
    s.queue_birth[v, e, slot] = birth
    s.queue_part[v, e, slot] = part
    s.count[v, e] = s.count[v, e] + 1
    s.last_entry[v, e] = t
    if s.count[v, e] == 1:
        s.front_ready[v, e] = wp.max(t + transit(m, v, e), s.last_leave[v, e] + headway(m, v, e))
    if kind == K_STATION:
        every = int(m.parameters[v, e, P_SETUP_EVERY])
        if every > 0 and s.since_setup[v, e] >= every and m.parameters[v, e, P_SETUP] > F64(0.0):
            s.phase[v, e] = SETUP
            s.event_time[v, e] = t + m.parameters[v, e, P_SETUP]
        else:
            start_work(m, s, v, e, t)


@wp.func
def pop_front(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    """Remove the front part of `e`; returns its queue slot (still readable until the next accept)."""
    slot = s.head[v, e]
    s.head[v, e] = (slot + 1) % m.queue_size
    s.count[v, e] = s.count[v, e] - 1
    s.last_leave[v, e] = t
    if s.count[v, e] > 0:
        entry = s.queue_entry[v, e, s.head[v, e]]
        s.front_ready[v, e] = wp.max(entry + transit(m, v, e), t + headway(m, v, e))
    if m.kind[e] == K_STATION:
        s.phase[v, e] = EMPTY
    if m.kind[e] == K_SOURCE:
        s.event_time[v, e] = t + duration(s, v, e, m.distribution[e], m.parameters[v, e, P_INTERARRIVAL],
                                          m.parameters[v, e, P_ARRIVAL_SPREAD])
    return slot


@wp.func
def can_leave(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    """1 when the front part of `e` is ready to leave now and no robot has claimed it."""
    kind = m.kind[e]
    if kind == K_ROBOT or kind == K_SINK or s.count[v, e] == 0 or s.claimed[v, e] == 1:
        return 0
    if s.front_ready[v, e] > t + EPS or (kind == K_STATION and s.phase[v, e] != DONE):
        return 0
    return 1


@wp.func
def push(m: LineArrays, s: LineState, totals: LineTotals, log: PlaybackLog, v: int, e: int, t: wp.float64,
         warmup: wp.float64) -> int:
    """Move the front part of `e` downstream if it is ready and somewhere has room; 1 when it moved."""
    if can_leave(m, s, v, e, t) == 0:
        return 0
    target = choose_downstream(m, s, v, e, t)
    if target < 0:
        return 0
    slot = take_front(m, s, totals, v, e, t, warmup)
    accept(m, s, totals, log, v, target, t, warmup, s.queue_birth[v, e, slot], s.queue_part[v, e, slot])
    return 1


@wp.func
def take_front(m: LineArrays, s: LineState, totals: LineTotals, v: int, e: int, t: wp.float64,
               warmup: wp.float64) -> int:
    """`pop_front` for a part leaving towards the line: one leaving a source is released into it now."""
    slot = pop_front(m, s, v, e, t)
    if m.kind[e] == K_SOURCE:
        s.queue_birth[v, e, slot] = t
        s.wip[v] = s.wip[v] + 1
        if t >= warmup:
            totals.released[v] = totals.released[v] + 1
    return slot


@wp.func
def ready_upstream(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    """The predecessor of `e` whose unclaimed front part was ready first (element order breaks ties), or -1."""
    best = int(-1)
    for k in range(m.predecessor_start[e], m.predecessor_start[e + 1]):
        p = m.predecessors[k]
        if can_leave(m, s, v, p, t) == 1 and (best < 0 or s.front_ready[v, p] < s.front_ready[v, best]):
            best = p
    return best


@wp.func
def ready_since(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> wp.float64:
    """Since when the part `e` could move now has been ready: its own front part, or for a robot at home the
    upstream part it would pick; INF when `e` has nothing to move."""
    if m.kind[e] == K_ROBOT:
        if s.phase[v, e] != HOME or s.event_time[v, e] < INF:
            return INF
        source = ready_upstream(m, s, v, e, t)
        if source < 0:
            return INF
        return s.front_ready[v, source]
    if can_leave(m, s, v, e, t) == 0:
        return INF
    return s.front_ready[v, e]


@wp.func
def mover_rank(m: LineArrays, e: int) -> int:
    """Tie-break among parts ready at the same time: pushes in element order, then robots' pulls."""
    if m.kind[e] == K_ROBOT:
        return m.n_elements + e
    return e


@wp.func
def comes_before(time: wp.float64, rank: int, other_time: wp.float64, other_rank: int) -> bool:
    return time < other_time or (time == other_time and rank < other_rank)


@wp.func
def pull(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    """A robot at home starts a cycle when a part is ready upstream and a place is free downstream."""
    if m.kind[e] != K_ROBOT or s.phase[v, e] != HOME or s.event_time[v, e] < INF:
        return 0
    source = ready_upstream(m, s, v, e, t)
    if source < 0:
        return 0
    target = choose_downstream(m, s, v, e, t)
    if target < 0:
        return 0
    s.claimed[v, source] = 1
    s.reserved[v, target] = s.reserved[v, target] + 1
    s.robot_from[v, e] = source
    s.robot_to[v, e] = target
    s.phase[v, e] = APPROACH
    s.event_time[v, e] = t + m.parameters[v, e, P_PICK]
    return 1


@wp.func
def move_first_ready(m: LineArrays, s: LineState, totals: LineTotals, log: PlaybackLog, v: int, t: wp.float64,
                     warmup: wp.float64) -> int:
    """Make one move: try the parts that can move in the order they became ready (a push before a robot's pull,
    then element order, on a tie) and move the first that finds room; 1 when a part moved.

    One move at a time, so that a place freed by a move goes to the part that waited longest for it."""
    n = m.n_elements
    k = int(0)  # movers[v, :k] sorted by (waiting_since, rank): an insertion sort, as few elements are ready
    for e in range(n):
        time = ready_since(m, s, v, e, t)
        if time < INF:
            rank = mover_rank(m, e)
            i = int(k)
            while i > 0 and comes_before(time, rank, s.waiting_since[v, i - 1], mover_rank(m, s.movers[v, i - 1])):
                s.waiting_since[v, i] = s.waiting_since[v, i - 1]
                s.movers[v, i] = s.movers[v, i - 1]
                i -= 1
            s.waiting_since[v, i] = time
            s.movers[v, i] = e
            k += 1
    for i in range(k):
        e = s.movers[v, i]
        if m.kind[e] == K_ROBOT:
            if pull(m, s, v, e, t) == 1:
                return 1
        elif push(m, s, totals, log, v, e, t, warmup) == 1:
            return 1
    return 0


@wp.func
def fire(m: LineArrays, s: LineState, totals: LineTotals, log: PlaybackLog, v: int, e: int, t: wp.float64,
         warmup: wp.float64):
    """The timed event of element `e`, due now."""
    kind = m.kind[e]
    s.event_time[v, e] = INF
    if kind == K_SOURCE:  # a part arrives and waits at the source until the line takes it
        part = s.next_part[v]
        s.next_part[v] = part + 1
        slot = s.head[v, e]
        s.queue_entry[v, e, slot] = t
        s.queue_birth[v, e, slot] = t
        s.queue_part[v, e, slot] = part
        s.count[v, e] = 1
        s.front_ready[v, e] = t
    elif kind == K_STATION:
        phase = s.phase[v, e]
        if phase == SETUP:
            s.since_setup[v, e] = 0
            start_work(m, s, v, e, t)
        elif phase == DOWN:
            s.to_failure[v, e] = time_to_failure(m, s, v, e)
            s.phase[v, e] = WORKING
            s.work_start[v, e] = t
            s.event_time[v, e] = t + wp.min(s.remaining[v, e], s.to_failure[v, e])
        elif phase == WORKING:
            elapsed = t - s.work_start[v, e]
            s.remaining[v, e] = s.remaining[v, e] - elapsed
            s.to_failure[v, e] = s.to_failure[v, e] - elapsed
            s.work_start[v, e] = t
            if s.remaining[v, e] <= EPS:
                s.since_setup[v, e] = s.since_setup[v, e] + 1
                if t >= warmup:
                    totals.finished[v, e] = totals.finished[v, e] + 1
                if uniform(s, v, e) < m.parameters[v, e, P_SCRAP]:
                    record(log, v, t, e, LOG_SCRAP, s.queue_part[v, e, s.head[v, e]])
                    pop_front(m, s, v, e, t)
                    s.wip[v] = s.wip[v] - 1
                    if t >= warmup:
                        totals.scrapped[v, e] = totals.scrapped[v, e] + 1
                else:
                    s.phase[v, e] = DONE
                    s.front_ready[v, e] = t
            else:  # the failure came first
                s.phase[v, e] = DOWN
                s.event_time[v, e] = t + exponential(s, v, e, m.parameters[v, e, P_MTTR])
    elif kind == K_ROBOT:
        phase = s.phase[v, e]
        if phase == APPROACH:  # gripped: the part leaves its upstream element
            source = s.robot_from[v, e]
            slot = take_front(m, s, totals, v, source, t, warmup)
            s.claimed[v, source] = 0
            own = s.head[v, e]
            s.queue_birth[v, e, own] = s.queue_birth[v, source, slot]
            s.queue_part[v, e, own] = s.queue_part[v, source, slot]
            s.queue_entry[v, e, own] = t
            s.count[v, e] = 1
            record(log, v, t, e, LOG_ENTER, s.queue_part[v, e, own])
            s.phase[v, e] = CARRY
            s.event_time[v, e] = t + m.parameters[v, e, P_PLACE]
        elif phase == CARRY:  # released: the part is in its reserved place
            target = s.robot_to[v, e]
            own = s.head[v, e]
            s.count[v, e] = 0
            s.reserved[v, target] = s.reserved[v, target] - 1
            if t >= warmup:
                totals.finished[v, e] = totals.finished[v, e] + 1
            accept(m, s, totals, log, v, target, t, warmup, s.queue_birth[v, e, own], s.queue_part[v, e, own])
            s.phase[v, e] = RETURN
            s.event_time[v, e] = t + m.parameters[v, e, P_RETURN]
        elif phase == RETURN:
            s.phase[v, e] = HOME


@wp.func
def any_upstream_part(m: LineArrays, s: LineState, v: int, e: int) -> int:
    for k in range(m.predecessor_start[e], m.predecessor_start[e + 1]):
        if s.count[v, m.predecessors[k]] > 0:
            return 1
    return 0


@wp.func
def booked_state(m: LineArrays, s: LineState, v: int, e: int, t: wp.float64) -> int:
    """What a station or robot is doing now: idle (a part is on its way), starved (none is), and so on."""
    phase = s.phase[v, e]
    if m.kind[e] == K_ROBOT:
        if phase != HOME:
            return S_WORKING
        if ready_upstream(m, s, v, e, t) >= 0:
            return S_BLOCKED  # a part waits for it, but there is no room downstream
    else:
        if phase == WORKING:
            return S_WORKING
        if phase == DOWN:
            return S_DOWN
        if phase == DONE:
            return S_BLOCKED
        if phase == SETUP:
            return S_SETUP
    if any_upstream_part(m, s, v, e) == 1:
        return S_IDLE
    return S_STARVED


@wp.kernel
def reset_line(m: LineArrays, s: LineState, seed: wp.uint32, replication: wp.array(dtype=wp.int32),
               start_time: wp.float64):
    """An empty line at `start_time`: random streams seeded per (replication, element), so variants
    of a sweep that share a replication see the same arrivals and failures (common random numbers)."""
    v, e = wp.tid()
    s.rng[v, e] = wp.uint32(wp.rand_init(wp.int32(seed), replication[v] * m.n_elements + e))
    uniform(s, v, e)
    s.count[v, e] = 0
    s.reserved[v, e] = 0
    s.claimed[v, e] = 0
    s.head[v, e] = 0
    s.phase[v, e] = 0
    s.turn[v, e] = 0
    s.since_setup[v, e] = 0
    s.booked[v, e] = -1
    s.front_ready[v, e] = INF
    s.event_time[v, e] = INF
    s.last_entry[v, e] = -INF
    s.last_leave[v, e] = -INF
    s.remaining[v, e] = F64(0.0)
    s.work_start[v, e] = start_time
    s.to_failure[v, e] = INF
    if m.kind[e] == K_STATION:
        s.to_failure[v, e] = time_to_failure(m, s, v, e)
    if m.kind[e] == K_SOURCE:
        s.event_time[v, e] = start_time + duration(s, v, e, m.distribution[e], m.parameters[v, e, P_INTERARRIVAL],
                                                   m.parameters[v, e, P_ARRIVAL_SPREAD])
    if e == 0:
        s.clock[v] = start_time
        s.wip[v] = 0
        s.next_part[v] = 0
        s.failed[v] = 0


@wp.kernel
def run_line(m: LineArrays, s: LineState, totals: LineTotals, log: PlaybackLog, until: wp.float64,
             warmup: wp.float64, first: int):
    """Advance variant `first + tid` from its clock to `until`."""
    v = first + wp.tid()
    t = s.clock[v]
    n = m.n_elements
    events = int(0)
    while t < until:
        for e in range(n):
            if s.event_time[v, e] <= t + EPS:
                fire(m, s, totals, log, v, e, t, warmup)
        moves = int(0)  # bounded: a loop through buffers alone could pass a part around forever
        while moves < (4 * n + 4) * n and move_first_ready(m, s, totals, log, v, t, warmup) == 1:
            moves += 1
        following = INF
        for e in range(n):
            following = wp.min(following, s.event_time[v, e])
            if s.count[v, e] > 0 and s.front_ready[v, e] > t + EPS:
                following = wp.min(following, s.front_ready[v, e])
            if m.kind[e] == K_CONVEYOR and s.count[v, e] > 0:
                free_at = s.last_entry[v, e] + headway(m, v, e)
                if free_at > t + EPS:
                    following = wp.min(following, free_at)
        end = wp.min(following, until)
        begin = wp.max(t, warmup)
        span = end - begin
        for e in range(n):
            kind = m.kind[e]
            if kind == K_STATION or kind == K_ROBOT:
                state = booked_state(m, s, v, e, t)
                if state != s.booked[v, e]:
                    s.booked[v, e] = state
                    record(log, v, t, e, LOG_STATE, state)
                if span > F64(0.0):
                    totals.state_time[v, e, state] = totals.state_time[v, e, state] + span
        if span > F64(0.0):
            totals.wip_time[v] = totals.wip_time[v] + F64(s.wip[v]) * span
        t = end
        events += 1
        if events > MAX_EVENTS:
            s.failed[v] = 1
            break
    s.clock[v] = t
