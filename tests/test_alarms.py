"""Alarm rules and their lifecycle: limits with hysteresis, rate of change, state equals, stale data;
raised -> acknowledged -> cleared (and the other order), with every transition an event."""

import math
import textwrap
import time

import pytest
from pxr import Usd

from twin.core.alarms import AlarmEngine, AlarmRuleError, parse_rule, rules_from_stage
from twin.core.cache import UNCERTAIN_LAST_USABLE_VALUE, RuntimeCache
from twin.core.errors import BindingError, LayoutError, TwinError

KEY = "/F/Oven.twin:temperature"


def engine_with(*specs, width=1, kind="float"):
    cache = RuntimeCache()
    row = cache.add_signal("/F/Oven", "twin:temperature", unit="degC", width=width, kind=kind)
    rules = [parse_rule(spec, KEY, where="test") for spec in specs]
    return cache, row, AlarmEngine(cache, rules)


def states(engine):
    return [(a["rule"].rsplit(":", 1)[1], a["state"]) for a in engine.open_alarms()]


def test_high_limit_with_hysteresis_and_the_full_lifecycle():
    cache, row, engine = engine_with({"high": 60.0, "deadband": 3.0, "severity": "high"})
    for t, value in enumerate([55.0, 60.0]):  # at the limit is not above it
        cache.write_signal(row, value, source_time=100.0 + t)
        engine.evaluate(now=100.0 + t)
    assert engine.open_alarms() == []
    cache.write_signal(row, 60.5, source_time=102.0)
    engine.evaluate(now=102.0)
    (alarm,) = engine.open_alarms()
    assert alarm["state"] == "active" and alarm["raised"] == 102.0 and alarm["value"] == 60.5
    assert alarm["severity"] == "high" and alarm["message"] == f"{KEY} above 60 degC"
    cache.write_signal(row, 57.5, source_time=103.0)  # below the limit, within the deadband: still active
    engine.evaluate(now=103.0)
    assert states(engine) == [("high", "active")]
    engine.acknowledge(alarm["id"], "ann", "checking the coolant")
    assert states(engine) == [("high", "acknowledged")]
    with pytest.raises(ValueError, match="already acknowledged by ann"):
        engine.acknowledge(alarm["id"], "bob")
    cache.write_signal(row, 56.9, source_time=104.0)  # past the deadband: cleared, and acknowledged: closed
    engine.evaluate(now=104.0)
    assert engine.open_alarms() == []
    events = [(e.event, e.time, e.user) for e in engine.events_since(0)]
    assert events[0] == ("raised", 102.0, None) and events[2] == ("cleared", 104.0, None)
    assert events[1][0] == "acknowledged" and events[1][2] == "ann"
    assert engine.events_since(0)[1].comment == "checking the coolant"
    with pytest.raises(KeyError, match="no open alarm"):
        engine.acknowledge(alarm["id"], "ann")
    assert engine.events_since(2)[0].event == "cleared" and engine.events_since(3) == []


def test_cleared_unacknowledged_stays_listed_and_is_raised_again():
    cache, row, engine = engine_with({"low": 10.0, "deadband": 1.0})
    for t, value in enumerate([9.0, 11.5]):
        cache.write_signal(row, value, source_time=t)
        engine.evaluate(now=t)
    assert states(engine) == [("low", "cleared")]  # the operator has not seen it yet
    cache.write_signal(row, 8.0, source_time=2.0)
    engine.evaluate(now=2.0)
    (alarm,) = engine.open_alarms()
    assert alarm["state"] == "active" and alarm["raised_count"] == 2
    cache.write_signal(row, 12.0, source_time=3.0)
    engine.evaluate(now=3.0)
    engine.acknowledge(alarm["id"], "ann")  # cleared + acknowledged: closed
    assert engine.open_alarms() == []
    assert [e.event for e in engine.events_since(0)] == ["raised", "cleared", "raised", "cleared", "acknowledged"]


def test_bad_quality_neither_raises_nor_clears_a_limit_alarm():
    cache, row, engine = engine_with({"high": 60.0})
    cache.write_signal(row, 70.0, source_time=1.0)
    engine.evaluate(now=1.0)
    cache.write_signal(row, 20.0, status=0x80000000, source_time=2.0)  # Bad: the 20 is not a reading
    engine.evaluate(now=2.0)
    assert states(engine) == [("high", "active")]
    cache.mark_status([row], UNCERTAIN_LAST_USABLE_VALUE)
    engine.evaluate(now=3.0)
    assert states(engine) == [("high", "active")]


def test_rate_of_change_over_a_window_ignores_noise_and_sees_ramps():
    cache, row, engine = engine_with({"rate": 0.5, "window_s": 10.0})
    noise = [0.3, -0.3] * 20
    for t in range(40):  # +-0.3 of noise at 1 Hz: 0.6/s between samples, 0 over the window
        cache.write_signal(row, 30.0 + noise[t], source_time=float(t))
        cache.received_time[row] = float(t)  # rates run on the twin's clock: received at t
        engine.evaluate(now=float(t))
    assert engine.open_alarms() == []
    for t in range(40, 60):  # a ramp of 1 degC/s
        cache.write_signal(row, 30.0 + (t - 39), source_time=float(t))
        cache.received_time[row] = float(t)
        engine.evaluate(now=float(t))
    (alarm,) = engine.open_alarms()
    # at t=45: (36.0 - 29.7 at t=35) / 10 s = 0.63/s; at t=44 it was (35.0 - 30.3) / 10 = 0.47/s
    assert alarm["kind"] == "rate" and alarm["raised"] == 45.0 and alarm["value"] == pytest.approx(0.63)
    engine.evaluate(now=75.0)  # no new samples for 15 s: the value stands still, the rate is 0
    assert states(engine) == [("rate", "cleared")]


def test_state_equals_a_label_or_a_code_and_stale_data():
    cache = RuntimeCache()
    state = cache.add_signal("/F/Mill", "twin:state", kind="int")
    beat = cache.add_signal("/F/Plc", "twin:heartbeat", kind="int")
    rules = [parse_rule({"equals": "down", "severity": "critical", "message": "Mill is down"}, "/F/Mill.twin:state"),
             parse_rule({"equals": 3, "name": "starved"}, "/F/Mill.twin:state"),
             parse_rule({"stale": 5.0}, "/F/Plc.twin:heartbeat")]
    engine = AlarmEngine(cache, rules)
    engine.evaluate(now=0.0)  # nothing received yet: waiting for initial data is not stale
    assert engine.open_alarms() == []
    cache.write_signal(state, 4, source_time=1.0, label="down")
    cache.write_signal(beat, 1, source_time=1.0)
    engine.evaluate(now=cache.received_time[beat] + 1.0)
    assert [(a["message"], a["severity"]) for a in engine.open_alarms()] == [("Mill is down", "critical")]
    cache.write_signal(state, 3, source_time=2.0, label="starved")
    engine.evaluate(now=cache.received_time[beat] + 6.0)  # and no heartbeat for 6 s
    assert sorted(states(engine)) == [("equals", "cleared"), ("stale", "active"), ("starved", "active")]
    cache.write_signal(beat, 2, source_time=8.0)
    engine.evaluate(now=cache.received_time[beat])
    assert ("stale", "cleared") in states(engine)
    cache.mark_status([beat], UNCERTAIN_LAST_USABLE_VALUE)  # the connector lost the server
    engine.evaluate(now=cache.received_time[beat])
    assert ("stale", "active") in states(engine)


def test_rate_ignores_the_source_clock_and_stale_counts_a_silent_source():
    """A PLC clock 30 s behind neither silences a rate rule nor trips it; a source that never reported
    is stale once `stale` seconds have passed since the engine started."""
    cache, row, engine = engine_with({"rate": 0.5, "window_s": 10.0})
    start = time.time()
    for t in range(30):  # a ramp of 1 unit/s, stamped by a clock 30 s behind
        cache.write_signal(row, float(t), source_time=start + t - 30.0)
        cache.received_time[row] = start + t  # received now: what the connector records
        engine.evaluate(now=start + t)
    (alarm,) = engine.open_alarms()
    assert alarm["value"] == pytest.approx(1.0)
    cache = RuntimeCache()
    cache.add_signal("/F/Plc", "twin:heartbeat", kind="int")
    engine = AlarmEngine(cache, [parse_rule({"stale": 5.0}, "/F/Plc.twin:heartbeat")])
    engine.evaluate(now=engine.started + 4.0)
    assert engine.open_alarms() == []
    engine.evaluate(now=engine.started + 6.0)  # never reported, for longer than 5 s
    assert states(engine) == [("stale", "active")]


def test_alarm_events_are_stored_by_the_historian_and_ids_continue(tmp_path):
    from twin.history.store import Historian

    cache, row, engine = engine_with({"high": 60.0, "message": "Oven hot"})
    historian = Historian(tmp_path / "h.duckdb", cache)
    historian.attach_alarms(engine)
    t0 = time.time() - 100.0  # source times; the acknowledgement is stamped with the wall clock
    cache.write_signal(row, 61.0, source_time=t0)
    engine.evaluate(now=t0)
    engine.acknowledge(engine.open_alarms()[0]["id"], "ann", "seen")
    cache.write_signal(row, 50.0, source_time=time.time() + 1.0)
    engine.evaluate()
    historian.flush()
    events = historian.alarm_events()
    assert [(e["event"], e["alarm"], e["value"], e["user"]) for e in events] == [
        ("raised", 1, 61.0, None), ("acknowledged", 1, None, "ann"), ("cleared", 1, 50.0, None)]
    assert events[0]["message"] == "Oven hot" and events[1]["comment"] == "seen" and events[0]["time"] == t0
    assert historian.alarm_events(start=t0 + 1.0) == events[1:]
    (then,) = historian.alarms_at(t0 + 0.5)  # the list as it was: raised, not yet acknowledged
    assert (then["id"], then["state"], then["value"], then["kind"]) == (1, "active", 61.0, "high")
    assert historian.alarms_at(events[1]["time"])[0]["state"] == "acknowledged"
    assert historian.alarms_at(t0 - 1.0) == [] and historian.alarms_at(time.time() + 10.0) == []
    historian.close()
    reopened = Historian(tmp_path / "h.duckdb", cache)  # a restarted twin does not reuse alarm ids
    fresh = AlarmEngine(cache, engine.rules)
    reopened.attach_alarms(fresh)
    cache.write_signal(row, 65.0, source_time=time.time() + 2.0)
    fresh.evaluate()
    assert fresh.open_alarms()[0]["id"] == 2
    reopened.flush()
    reopened.close()
    # a run that stopped with alarm 2 open: the next one closes it, so past lists do not keep it open forever
    third = Historian(tmp_path / "h.duckdb", cache)
    third.attach_alarms(AlarmEngine(cache, engine.rules))
    assert [e["event"] for e in third.alarm_events() if e["alarm"] == 2] == ["raised", "closed"]
    assert third.alarms_at(time.time() + 10.0) == []
    third.close()


@pytest.mark.parametrize("spec, field, message", [
    ({"high": 1, "low": 0}, "low", "exactly one of"),
    ({}, None, "exactly one of"),
    ({"high": "hot"}, "high", "finite number"),
    ({"rate": 0}, "rate", "must be > 0"),
    ({"stale": -1}, "stale", "must be >= 0"),
    ({"equals": "down", "deadband": 1}, "deadband", "deadband applies to high, low and rate"),
    ({"high": 1, "severity": "urgent"}, "severity", "severity must be one of"),
    ({"high": 1, "colour": "red"}, "colour", "unknown alarm field 'colour'"),
    ({"high": 1, "name": "too hot"}, "name", "without spaces"),
    ({"high": math.nan}, "high", "finite number"),
    ({"rate": 0.5, "deadband": 0.5}, "deadband", "could never clear"),
    ({"high": None}, "high", "alarm high needs a value"),
    ({"rate": 1, "window_s": 0}, "window_s", "alarm window_s must be > 0, got 0"),
    ({"equals": ""}, "equals", "a number or a state name"),
    ({"high": 1, "message": 7}, "message", "alarm message must be text, got 7"),
])
def test_bad_rules_name_the_field(spec, field, message):
    with pytest.raises(AlarmRuleError, match=message) as caught:
        parse_rule(spec, KEY)
    assert caught.value.field == field


def test_rules_on_missing_or_unsuitable_signals_are_reported():
    cache = RuntimeCache()
    cache.add_signal("/F/Robot", "twin:jointPositions", width=6)
    engine = AlarmEngine(cache, [parse_rule({"high": 1}, "/F/Nope.twin:x", where="b.yaml:7")])
    AlarmEngine(RuntimeCache(), engine.rules).evaluate(now=1.0)  # an empty cache: nothing to watch, no error
    engine.check()  # a rule for a signal this deployment does not bind is listed, not fatal
    assert [rule.where for rule in engine.unresolved()] == ["b.yaml:7"]
    engine.evaluate(now=1.0)
    assert engine.open_alarms() == []
    engine = AlarmEngine(cache, [parse_rule({"high": 1}, "/F/Robot.twin:jointPositions", where="b.yaml:9")])
    with pytest.raises(TwinError, match="numeric scalar signal, and this one is float of width 6"):
        engine.check()
    with pytest.raises(TwinError, match="already defined at b.yaml:9"):
        engine.add_rules([parse_rule({"high": 2}, "/F/Robot.twin:jointPositions", where="c.yaml:1")])


LAYOUT = """\
#usda 1.0
(
    defaultPrim = "F"
)

def Xform "F"
{
    def Xform "Oven"
    {
        custom string twin:signal = "twin:temperature"
        custom double twin:alarm:hot:high = 60
        custom double twin:alarm:hot:deadband = 2
        custom string twin:alarm:hot:severity = "high"
        custom string twin:alarm:door:signal = "twin:doorOpen"
        custom bool twin:alarm:door:equals = 1
    }
}
"""


def test_rules_from_the_layout(tmp_path):
    path = tmp_path / "layout.usda"
    path.write_text(LAYOUT)
    rules = {rule.id: rule for rule in rules_from_stage(Usd.Stage.Open(str(path)), str(path))}
    assert set(rules) == {"/F/Oven.twin:temperature:hot", "/F/Oven.twin:doorOpen:door"}
    hot = rules["/F/Oven.twin:temperature:hot"]
    assert (hot.kind, hot.limit, hot.deadband, hot.severity) == ("high", 60.0, 2.0, "high")
    assert rules["/F/Oven.twin:doorOpen:door"].equals == 1.0
    path.write_text(LAYOUT.replace("twin:alarm:hot:severity", "twin:alarm:hot:severity2"))
    with pytest.raises(LayoutError, match=r"/F/Oven: twin:alarm:hot:severity2: unknown alarm field"):
        rules_from_stage(Usd.Stage.Open(str(path)), str(path))


def test_rules_in_the_binding_file_are_checked_with_lines(tmp_path):
    from twin.connectors.bindings import load_bindings

    text = textwrap.dedent("""\
        servers:
          plc: {endpoint: "opc.tcp://127.0.0.1:4840/"}
        bindings:
          - server: plc
            node: "ns=2;s=Mill.State"
            prim: /F/Mill
            attr: twin:state
            kind: int
            enum: {0: idle, 4: down}
            alarms:
              - {equals: down, severity: critical}
              - {equals: broken, name: broken}
        """)
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(BindingError, match=r"b.yaml:12: .*state 'broken' is not in this binding's enum"):
        load_bindings(path)
    path.write_text(text.replace("      - {equals: broken, name: broken}\n", "      - {high: 3}\n"))
    (binding,) = load_bindings(path).bindings
    assert [(rule.kind, rule.where) for rule in binding.alarms] == [("equals", f"{path}:11"), ("high", f"{path}:12")]
    path.write_text(text.replace("kind: int", "kind: text").replace("    enum: {0: idle, 4: down}\n", "")
                    .replace("{equals: broken, name: broken}", "{low: 1}"))
    with pytest.raises(BindingError, match=r"b.yaml:11: .*a low alarm needs a numeric scalar signal, not text"):
        load_bindings(path)
    path.write_text(text.replace("    enum: {0: idle, 4: down}\n", "").replace("{equals: broken, name: broken}",
                                                                           "{equals: 4, name: four}"))
    with pytest.raises(BindingError, match=r"b.yaml:10: .*state 'down' is not in this binding's enum \(none: a name"):
        load_bindings(path)  # a state name on an int without an enum could never match


def test_the_list_rebuilt_from_events_is_the_engines_list_at_every_step():
    """alarms_from_events (the history's list at an instant) and the live engine share one lifecycle:
    after any sequence of raises, clears and acknowledgements in any order, both lists are equal."""
    import collections
    import random

    from twin.core.alarms import alarms_from_events

    cache = RuntimeCache()
    rows = [cache.add_signal("/F/Oven", f"twin:t{i}") for i in range(3)]
    rules = [parse_rule({"high": 50.0, "severity": severity}, f"/F/Oven.twin:t{i}", where="test")
             for i, severity in enumerate(("low", "high", "critical"))]
    engine = AlarmEngine(cache, rules)
    rng = random.Random(7)
    for step in range(300):
        row = rng.choice(rows)
        if rng.random() < 0.3 and engine.open_alarms():
            alarm = rng.choice(engine.open_alarms())
            if alarm["state"] != "acknowledged":
                engine.acknowledge(alarm["id"], rng.choice(["ann", "bob"]), f"step {step}")
        else:
            cache.write_signal(row, rng.choice([40.0, 60.0]), source_time=1000.0 + step)
            engine.evaluate(now=1000.0 + step)
        rebuilt = alarms_from_events(e.to_json() for e in engine.events_since(0))
        assert rebuilt == engine.open_alarms(), step
    events = engine.events_since(0)
    assert {e.event for e in events} == {"raised", "cleared", "acknowledged"}
    raises = collections.Counter(e.alarm for e in events if e.event == "raised")
    assert max(raises.values()) > 1  # some alarm was raised again before it was closed
    assert len({(e.rule, e.alarm) for e in events}) > len(rules)  # and some rule's alarm closed, then a new one
