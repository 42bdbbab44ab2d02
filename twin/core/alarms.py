"""Alarms: rules on signals, evaluated every tick, with the lifecycle operators expect (ISA-18.2 in short).

A rule watches one signal: a high or low limit with hysteresis (`deadband`), a rate of change over a
window, a state that equals a value (an enum label, a number or a text), or stale data. Rules come from
the layout (`twin:alarm:NAME:FIELD` attributes on a prim, docs/alarms.md) or from the binding file
(`alarms:` under a binding); both use the same fields, parsed here.

Lifecycle of an alarm: raised -> active (unacknowledged); an operator acknowledges it (who, when, a
comment); when its condition goes away it is cleared. It leaves the list once it is both cleared and
acknowledged; if the condition returns first, it is raised again. Every transition is an `AlarmEvent`
with a sequence number: the historian stores them, the stream and the SDK read them with
`events_since(seq)`, so no reader needs a callback into the core.

Rules are evaluated on each signal's latest value every tick (the values are gathered from the cache
in one vectorised read, then each rule decides); data of bad quality neither raises nor clears a limit
alarm (the stale rule is there for that).
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from twin.core.cache import BAD_WAITING_FOR_INITIAL_DATA, RuntimeCache, quality_codes, quality_name
from twin.core.errors import LayoutError, TwinError
from twin.core.schema import FieldError, blamed, sentence

Kind = Literal["high", "low", "rate", "equals", "stale"]
Severity = Literal["low", "medium", "high", "critical"]
KINDS: tuple[str, ...] = get_args(Kind)
SEVERITIES = {"low": 250, "medium": 500, "high": 750, "critical": 1000}  # OPC-UA A&C severity scale
EVENT_BUFFER = 10_000  # events kept in memory for readers that poll with events_since
_NUMBER = "a finite number"


class AlarmRuleError(TwinError):
    """A rule's fields are wrong; `field` names the offending one so callers can point at its line."""

    def __init__(self, field_name: str | None, message: str):
        self.field = field_name
        super().__init__(message)


@dataclass(frozen=True)
class AlarmRule:
    key: str  # the signal, 'prim.attr'
    name: str  # unique per signal
    kind: str  # one of KINDS
    limit: float = math.nan  # high/low: the limit; rate: units per second; stale: seconds (0: source lost)
    equals: float | str | None = None
    deadband: float = 0.0  # hysteresis: how far back past the limit the value must go to clear
    window_s: float = 10.0  # rate: the change is measured over this window
    severity: str = "medium"
    message: str = ""
    where: str = ""  # where it was defined, for errors and the UI: 'file:line' or 'prim'

    @property
    def id(self) -> str:
        return f"{self.key}:{self.name}"

    def describe(self, unit: str = "") -> str:
        if self.message:
            return self.message
        unit = f" {unit}" if unit else ""
        return {"high": f"{self.key} above {self.limit:g}{unit}", "low": f"{self.key} below {self.limit:g}{unit}",
                "rate": f"{self.key} changes faster than {self.limit:g}{unit}/s",
                "equals": f"{self.key} is {self.equals}",
                "stale": f"{self.key}: no fresh data" + (f" for {self.limit:g} s" if self.limit else "")}[self.kind]


class AlarmRuleSpec(BaseModel):
    """A rule's fields as written (binding file or layout), before it is tied to a signal."""

    model_config = ConfigDict(strict=True, extra="forbid")

    high: float | None = Field(default=None, allow_inf_nan=False, description=_NUMBER)
    low: float | None = Field(default=None, allow_inf_nan=False, description=_NUMBER)
    rate: float | None = Field(default=None, gt=0, allow_inf_nan=False, description=_NUMBER)  # units per second
    equals: float | str | None = None  # a number, or a state name (an enum label or a text value)
    stale: float | None = Field(default=None, ge=0, allow_inf_nan=False, description=_NUMBER)  # seconds; 0: source lost
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False, description=_NUMBER)
    window_s: float = Field(default=10.0, gt=0, allow_inf_nan=False, description=_NUMBER)
    severity: Severity = "medium"
    message: str = ""
    name: str | None = Field(default=None, pattern=r"^[^ :/.]+$", description="a word without spaces, ':', '/' or '.'")

    @field_validator("equals", mode="before")
    @classmethod
    def _number_or_state(cls, value: object) -> float | str:
        if isinstance(value, bool | int | float):  # a layout's `bool equals = 1` is a number too
            return float(value)
        if not isinstance(value, str) or value == "":
            raise ValueError(f"alarm equals must be a number or a state name, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> AlarmRuleSpec:
        given = [kind for kind in KINDS if kind in self.model_fields_set]
        if len(given) != 1:
            raise FieldError(given[1] if given else (), f"an alarm takes exactly one of {', '.join(KINDS)}; "
                                                        f"got {given or 'none'}")
        kind = self.kind
        if getattr(self, kind) is None:
            raise FieldError(kind, f"alarm {kind} needs a value")
        if "deadband" in self.model_fields_set and kind not in ("high", "low", "rate"):
            raise FieldError("deadband", f"a deadband applies to high, low and rate alarms, not {kind}")
        if "window_s" in self.model_fields_set and kind != "rate":
            raise FieldError("window_s", "window_s applies to rate alarms only")
        if self.rate is not None and self.deadband >= self.rate:
            raise FieldError("deadband", f"a rate alarm's deadband ({self.deadband:g}) must be below its rate "
                                         f"({self.rate:g}), or it could never clear")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in KINDS if kind in self.model_fields_set)

    def rule(self, key: str, where: str) -> AlarmRule:
        kind = self.kind
        limit = math.nan if kind == "equals" else float(getattr(self, kind))
        return AlarmRule(key=key, name=self.name or kind, kind=kind, limit=limit, equals=self.equals,
                         deadband=self.deadband, window_s=self.window_s, severity=self.severity,
                         message=self.message, where=where)


def parse_rule(spec: Mapping[str, object], key: str, *, default_name: str | None = None,
               where: str = "") -> AlarmRule:
    """A rule from its fields: exactly one of high/low/rate/equals/stale, plus deadband, window_s,
    severity, message, name. Raises AlarmRuleError naming the field."""
    fields = dict(spec)
    if default_name is not None:
        fields.setdefault("name", default_name)
    try:
        return AlarmRuleSpec.model_validate(fields).rule(key, where)
    except ValidationError as error:
        raise _rule_error(error.errors(include_url=False)[0], fields) from None


def _rule_error(error: ErrorDetails, fields: dict[str, object]) -> AlarmRuleError:
    loc = blamed(error)
    name = str(loc[0]) if loc else None
    if name is None:
        return AlarmRuleError(None, sentence(error, None, "", None))
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(AlarmRuleSpec.model_fields))
        return AlarmRuleError(name, f"unknown alarm field {name!r} (allowed: {allowed})")
    return AlarmRuleError(name, sentence(error, AlarmRuleSpec, name, fields.get(name), prefix="alarm "))


ATTRIBUTE_PREFIX = "twin:alarm:"


def rules_from_stage(stage, layout_path: str = "") -> list[AlarmRule]:
    """Rules authored in the layout: `twin:alarm:NAME:FIELD` attributes on the prim that owns the signal,
    e.g. `double twin:alarm:hot:high = 60`, `double twin:alarm:hot:deadband = 3`. `FIELD` `signal` names the
    watched attribute; without it, a sensor's `twin:signal` is used."""
    specs: dict[tuple[str, str], dict[str, object]] = {}
    for prim in stage.Traverse():
        for attribute in prim.GetAttributes():
            name = attribute.GetName()
            if not name.startswith(ATTRIBUTE_PREFIX):
                continue
            alarm_name, _, field_name = name[len(ATTRIBUTE_PREFIX):].partition(":")
            if not field_name:
                raise LayoutError(layout_path, f"{prim.GetPath()}: attribute {name} must be named "
                                               f"twin:alarm:NAME:FIELD (e.g. twin:alarm:hot:high)")
            value = attribute.Get()
            specs.setdefault((str(prim.GetPath()), alarm_name), {})[field_name] = (
                value.item() if hasattr(value, "item") else value)
    rules = []
    for (prim_path, alarm_name), spec in specs.items():
        prim = stage.GetPrimAtPath(prim_path)
        watched = spec.pop("signal", None)
        if watched is None and prim.GetAttribute("twin:signal"):
            watched = prim.GetAttribute("twin:signal").Get()
        where = f"{layout_path}: {prim_path}"
        if not isinstance(watched, str) or not watched:
            raise LayoutError(layout_path, f"{prim_path}: alarm {alarm_name} needs twin:alarm:{alarm_name}:signal "
                                           f"(the attribute it watches)")
        try:
            rules.append(parse_rule(spec, f"{prim_path}.{watched}", default_name=alarm_name, where=where))
        except AlarmRuleError as error:
            field_name = f"twin:alarm:{alarm_name}:{error.field}" if error.field else f"alarm {alarm_name}"
            raise LayoutError(layout_path, f"{prim_path}: {field_name}: {error}") from None
    return rules


@dataclass
class Alarm:
    """One alarm of one rule; `state` is what operators see."""

    id: int
    rule: AlarmRule
    message: str
    raised: float  # when the condition began (source time of the value that raised it)
    value: object  # the value that raised it
    active: bool = True
    acknowledged: bool = False
    cleared: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    comment: str = ""
    raised_count: int = 1

    @property
    def state(self) -> str:
        if self.active:
            return "acknowledged" if self.acknowledged else "active"
        return "cleared"  # and not yet acknowledged: still in the list

    # The lifecycle, shared by the engine (live) and by `alarms_from_events` (an instant of the history).
    @property
    def closed(self) -> bool:
        """Cleared and acknowledged: off the list; its rule's next raise is a new alarm."""
        return not self.active and self.acknowledged

    def raised_again(self, when: float, value) -> None:
        """Its condition came back before it was closed: active and unacknowledged again, counted."""
        self.active, self.acknowledged, self.cleared = True, False, None
        self.raised, self.value = when, value
        self.raised_count += 1

    def clear(self, when: float) -> None:
        self.active, self.cleared = False, when

    def acknowledge(self, when: float, user: str | None, comment: str) -> None:
        self.acknowledged, self.acknowledged_at, self.acknowledged_by, self.comment = True, when, user, comment

    def to_json(self) -> dict:
        return {"id": self.id, "rule": self.rule.id, "key": self.rule.key, "kind": self.rule.kind,
                "severity": self.rule.severity, "message": self.message, "state": self.state,
                "raised": self.raised, "value": _json_value(self.value), "cleared": self.cleared,
                "acknowledged_at": self.acknowledged_at, "acknowledged_by": self.acknowledged_by,
                "comment": self.comment, "raised_count": self.raised_count}


@dataclass(frozen=True)
class AlarmEvent:
    seq: int
    time: float
    alarm: int
    rule: str
    key: str
    kind: str  # the rule's kind: high, low, rate, equals, stale
    event: str  # "raised", "acknowledged", "cleared"
    severity: str
    message: str
    value: object = None
    user: str | None = None
    comment: str = ""

    def to_json(self) -> dict:
        return {"seq": self.seq, "time": self.time, "alarm": self.alarm, "rule": self.rule, "key": self.key,
                "kind": self.kind, "event": self.event, "severity": self.severity, "message": self.message,
                "value": _json_value(self.value), "user": self.user, "comment": self.comment}


def _listed(alarms: Iterable[Alarm]) -> list[Alarm]:
    """The alarm list's order: most severe first, then newest."""
    return sorted(alarms, key=lambda a: (-SEVERITIES.get(a.rule.severity, 0), -a.raised))


def alarms_from_events(events: Iterable[Mapping]) -> list[dict]:
    """The alarm list after `events` (stored transitions, oldest first, as AlarmEvent.to_json gives them),
    through the engine's own lifecycle: what the list showed at the last event's instant.

    An alarm whose raise is not among the events (cut by retention) is left out; a "closed" event (written
    when a twin restarts) removes its alarm.
    """
    alarms: dict[int, Alarm] = {}
    for event in events:
        alarm, kind = alarms.get(event["alarm"]), event["event"]
        if kind == "raised" and alarm is None:
            rule = AlarmRule(event["key"], event["rule"][len(event["key"]) + 1:], event["kind"],
                             severity=event["severity"])
            alarm = alarms[event["alarm"]] = Alarm(event["alarm"], rule, event["message"], event["time"],
                                                   event["value"])
        elif alarm is None:
            continue
        elif kind == "raised":
            alarm.raised_again(event["time"], event["value"])
        elif kind == "cleared":
            alarm.clear(event["time"])
        elif kind == "acknowledged":
            alarm.acknowledge(event["time"], event["user"], event["comment"] or "")
        if kind == "closed" or alarm.closed:
            del alarms[event["alarm"]]
    return [alarm.to_json() for alarm in _listed(alarms.values())]


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class _RateHistory:
    samples: collections.deque = field(default_factory=collections.deque)  # (source time, value)
    last_time: float = math.nan


class AlarmEngine:
    """Evaluates the rules against the runtime cache and keeps the alarms and their events.

    Rules may name signals that are registered later (connectors add theirs after the layout is read):
    they are resolved when the cache's schema changes; `unresolved()` lists those still missing.
    """

    def __init__(self, cache: RuntimeCache, rules: Iterable[AlarmRule] = ()):
        self.cache = cache
        self.rules: list[AlarmRule] = []
        self.alarms: dict[int, Alarm] = {}  # open alarms (active or not yet acknowledged), by id
        self.version = 0  # bumped on every change of the open alarms
        self.started = time.time()
        self.next_id = 1
        self.lock = threading.Lock()
        self._by_rule: dict[str, Alarm] = {}
        self._events: collections.deque[AlarmEvent] = collections.deque(maxlen=EVENT_BUFFER)
        self._seq = 0
        self._schema = -1
        self._rows = np.zeros(0, np.int64)  # per rule: cache row (-1: signal not registered yet)
        self._rates: dict[int, _RateHistory] = {}
        self.add_rules(rules)

    def add_rules(self, rules: Iterable[AlarmRule]) -> None:
        with self.lock:
            known = {rule.id: rule for rule in self.rules}
            for rule in rules:
                if rule.id in known:
                    raise TwinError(f"{rule.where}: alarm {rule.id} is already defined at {known[rule.id].where}")
                known[rule.id] = rule
                self.rules.append(rule)
            self._schema = -1  # resolve again

    def unresolved(self) -> list[AlarmRule]:
        with self.lock:
            self._resolve()
            return [rule for rule, row in zip(self.rules, self._rows, strict=True) if row < 0]

    def check(self) -> None:
        """Raise if a rule cannot work on its signal (a limit on text or an array). Call once the connectors
        have registered their signals; rules whose signal nothing provides are only listed by
        `unresolved()`: a layout may carry rules for signals that this deployment does not bind."""
        self.unresolved()
        for rule, row in zip(self.rules, self._rows, strict=True):
            if row < 0:
                continue
            info = self.cache.signals[row]
            if rule.kind in ("high", "low", "rate") and (info.width != 1 or info.kind == "text"):
                raise TwinError(f"{rule.where}: alarm {rule.name} on {rule.key}: a {rule.kind} alarm needs a "
                                f"numeric scalar signal, and this one is {info.kind} of width {info.width}")

    def _resolve(self) -> None:
        if self._schema == self.cache.schema and len(self._rows) == len(self.rules):
            return
        rows = []
        for rule in self.rules:
            try:
                rows.append(self.cache.find_signal(rule.key).row)
            except KeyError:
                rows.append(-1)
        self._rows = np.array(rows, np.int64)
        self._schema = self.cache.schema

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, now: float | None = None) -> None:
        """Raise and clear alarms from the cache's current values (called once per tick)."""
        now = time.time() if now is None else now
        with self.lock:
            if not self.rules:
                return
            self._resolve()
            valid = self._rows >= 0
            if not valid.any():
                return  # no watched signal is registered (yet)
            cache = self.cache
            with cache.lock:
                rows = np.where(valid, self._rows, 0)
                status = cache.status[rows]
                values = cache.values[cache.signal_offset[rows]]
                source_time = cache.source_time[rows].copy()
                received = cache.received_time[rows].copy()
                texts = [cache.text[row] for row in rows]
            usable = valid & (quality_codes(status) < 2)  # good or uncertain, not stale
            for index, rule in enumerate(self.rules):
                if not valid[index]:
                    continue
                condition = self._condition(index, rule, bool(usable[index]), int(status[index]), values[index],
                                            texts[index], float(received[index]), now)
                if condition is None:
                    continue  # undecided (bad data for a limit): keep the state
                active, value = condition
                when = now if rule.kind == "stale" or not math.isfinite(source_time[index]) else source_time[index]
                self._transition(rule, active, value, float(when))

    def _condition(self, index: int, rule: AlarmRule, usable: bool, status: int, value: float, text: str | None,
                   received: float, now: float) -> tuple[bool, object] | None:
        """(active, the value to report) for one rule, or None when the data cannot decide."""
        open_alarm = self._by_rule.get(rule.id)
        was_active = open_alarm is not None and open_alarm.active
        if rule.kind == "stale":
            lost = quality_name(status) in ("stale", "bad") and status != BAD_WAITING_FOR_INITIAL_DATA
            # a source that never reported counts as quiet since the engine started watching
            last = received if math.isfinite(received) else self.started
            quiet = rule.limit > 0 and now - last > rule.limit
            return lost or quiet, round(now - last, 3)
        if not usable:
            return None
        if rule.kind == "equals":
            current = text if isinstance(rule.equals, str) else float(value)
            return current == rule.equals, current
        if rule.kind == "high":
            return bool(value > rule.limit or (was_active and value >= rule.limit - rule.deadband)), float(value)
        if rule.kind == "low":
            return bool(value < rule.limit or (was_active and value <= rule.limit + rule.deadband)), float(value)
        rate = self._rate(index, rule, float(value), float(received), now)
        if rate is None:
            return None
        return bool(abs(rate) > rule.limit or (was_active and abs(rate) >= rule.limit - rule.deadband)), rate

    def _rate(self, index: int, rule: AlarmRule, value: float, received: float, now: float) -> float | None:
        """Change per second over the last `window_s`: the value now against the value a window ago
        (a signal that stopped changing has a rate of zero, even though no new samples arrive).

        Samples are kept by the time the twin received them, the clock `now` is on: a PLC whose clock is
        off by seconds must not silence (or trip) the rule."""
        history = self._rates.setdefault(index, _RateHistory())
        if received != history.last_time and math.isfinite(received):
            history.samples.append((received, value))
            history.last_time = received
        samples = history.samples
        start = now - rule.window_s
        while len(samples) > 1 and samples[1][0] <= start:
            samples.popleft()  # keep the last sample at or before the window's start
        if not samples or samples[0][0] > start:
            return None  # less than a window of history yet
        return (value - samples[0][1]) / rule.window_s

    def _transition(self, rule: AlarmRule, active: bool, value, when: float) -> None:
        alarm = self._by_rule.get(rule.id)
        if active and (alarm is None or not alarm.active):
            if alarm is None:
                info = self.cache.find_signal(rule.key)
                alarm = Alarm(self.next_id, rule, rule.describe(info.unit), when, value)
                self.next_id += 1
                self.alarms[alarm.id] = alarm
                self._by_rule[rule.id] = alarm
            else:  # raised again before it was acknowledged
                alarm.raised_again(when, value)
            self._event(alarm, "raised", when, value)
        elif not active and alarm is not None and alarm.active:
            alarm.clear(when)
            self._event(alarm, "cleared", when, value)
            if alarm.closed:
                self._close(alarm)

    def _close(self, alarm: Alarm) -> None:
        del self.alarms[alarm.id]
        del self._by_rule[alarm.rule.id]

    def _event(self, alarm: Alarm, event: str, when: float, value=None, user: str | None = None,
               comment: str = "") -> None:
        self._seq += 1
        self.version += 1
        self._events.append(AlarmEvent(self._seq, when, alarm.id, alarm.rule.id, alarm.rule.key, alarm.rule.kind,
                                       event,
                                       alarm.rule.severity, alarm.message, value, user, comment))

    # ---------------------------------------------------------------- operators and readers
    def acknowledge(self, alarm_id: int, user: str, comment: str = "") -> Alarm:
        """An operator has seen the alarm. Unknown or already acknowledged alarms are errors (KeyError /
        ValueError with the reason), so a client learns that someone else was first."""
        with self.lock:
            alarm = self.alarms.get(alarm_id)
            if alarm is None:
                raise KeyError(f"no open alarm {alarm_id}: it was cleared and acknowledged, or never existed")
            if alarm.acknowledged:
                raise ValueError(f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by} at "
                                 f"{alarm.acknowledged_at}")
            now = time.time()
            alarm.acknowledge(now, user, comment)
            self._event(alarm, "acknowledged", now, user=user, comment=comment)
            if alarm.closed:
                self._close(alarm)
            return alarm

    def open_alarms(self) -> list[dict]:
        """Active or unacknowledged alarms, most severe and then newest first."""
        with self.lock:
            return [alarm.to_json() for alarm in _listed(self.alarms.values())]

    def events_since(self, seq: int) -> list[AlarmEvent]:
        """Events after sequence number `seq` still in memory (the last EVENT_BUFFER), read from the newest
        end: sequence numbers are contiguous, so only the wanted events are copied."""
        with self.lock:
            wanted = min(self._seq - seq, len(self._events))
            if wanted <= 0:
                return []
            return list(itertools.islice(reversed(self._events), wanted))[::-1]

    def reserve_ids(self, after: int) -> None:
        """Give new alarms ids above `after` (the historian's stored ones), so ids stay unique across runs."""
        with self.lock:
            self.next_id = max(self.next_id, after + 1)

    @property
    def last_seq(self) -> int:
        return self._seq
