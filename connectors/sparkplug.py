"""Sparkplug B (Eclipse Sparkplug 3.0): the payload schema, metric values, and topics.

The schema is the spec's `sparkplug_b.proto` (package org.eclipse.tahu.protobuf), built here with
descriptor_pb2 rather than compiled from a .proto at build time; the field numbers are the spec's, so any
Sparkplug B client reads what this module writes and the other way round. DataSets, templates and metric
metadata are not declared: protobuf keeps them as unknown fields, and the twin binds scalar and array metrics.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

NAMESPACE = "spBv1.0"
NODE_MESSAGES = ("NBIRTH", "NDEATH", "NDATA", "NCMD")
DEVICE_MESSAGES = ("DBIRTH", "DDEATH", "DDATA", "DCMD")
REBIRTH_METRIC = "Node Control/Rebirth"
BD_SEQ_METRIC = "bdSeq"

# DataType codes (spec 6.4.16)
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 = range(1, 9)
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = range(9, 16)
BYTES = 17
ARRAY_FORMATS = {22: "b", 23: "h", 24: "i", 25: "q", 26: "B", 27: "H", 28: "I", 29: "Q", 30: "f", 31: "d"}
BOOLEAN_ARRAY, STRING_ARRAY, DATETIME_ARRAY = 32, 33, 34
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_INT_FIELD = {INT8, INT16, INT32, UINT8, UINT16, UINT32}
_LONG_FIELD = {INT64, UINT64, DATETIME}
_TEXT_TYPES = {STRING, TEXT, UUID}
# the Quality property of a metric (Ignition's convention, common in the field): 192 good, 500 stale, 0 bad
QUALITY_GOOD, QUALITY_STALE, QUALITY_BAD = 192, 500, 0


def _build_schema() -> tuple[Any, Any]:
    T = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="twin_sparkplug_b.proto", package="org.eclipse.tahu.protobuf",
                                              syntax="proto2")

    def message(name: str, fields: list[tuple], oneof: str | None = None, parent=None):
        holder = parent.nested_type if parent is not None else file.message_type
        msg = holder.add(name=name)
        if oneof:
            msg.oneof_decl.add(name=oneof)
        for field_name, number, kind, label, *rest in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if rest and rest[0]:
                field.type_name = rest[0]
            if len(rest) > 1 and rest[1]:
                field.oneof_index = 0
        return msg

    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    value = ".org.eclipse.tahu.protobuf.Payload."
    payload = message("Payload", [
        ("timestamp", 1, T.TYPE_UINT64, opt), ("metrics", 2, T.TYPE_MESSAGE, rep, value + "Metric"),
        ("seq", 3, T.TYPE_UINT64, opt), ("uuid", 4, T.TYPE_STRING, opt), ("body", 5, T.TYPE_BYTES, opt)])
    message("PropertyValue", [
        ("type", 1, T.TYPE_UINT32, opt), ("is_null", 2, T.TYPE_BOOL, opt),
        ("int_value", 3, T.TYPE_UINT32, opt, None, True), ("long_value", 4, T.TYPE_UINT64, opt, None, True),
        ("float_value", 5, T.TYPE_FLOAT, opt, None, True), ("double_value", 6, T.TYPE_DOUBLE, opt, None, True),
        ("boolean_value", 7, T.TYPE_BOOL, opt, None, True), ("string_value", 8, T.TYPE_STRING, opt, None, True),
        ("propertyset_value", 9, T.TYPE_MESSAGE, opt, value + "PropertySet", True),
        ("propertysets_value", 10, T.TYPE_MESSAGE, opt, value + "PropertySetList", True)],
        oneof="value", parent=payload)
    message("PropertySet", [("keys", 1, T.TYPE_STRING, rep),
                            ("values", 2, T.TYPE_MESSAGE, rep, value + "PropertyValue")], parent=payload)
    message("PropertySetList", [("propertyset", 1, T.TYPE_MESSAGE, rep, value + "PropertySet")], parent=payload)
    message("Metric", [
        ("name", 1, T.TYPE_STRING, opt), ("alias", 2, T.TYPE_UINT64, opt), ("timestamp", 3, T.TYPE_UINT64, opt),
        ("datatype", 4, T.TYPE_UINT32, opt), ("is_historical", 5, T.TYPE_BOOL, opt),
        ("is_transient", 6, T.TYPE_BOOL, opt), ("is_null", 7, T.TYPE_BOOL, opt),
        ("properties", 9, T.TYPE_MESSAGE, opt, value + "PropertySet"),
        ("int_value", 10, T.TYPE_UINT32, opt, None, True), ("long_value", 11, T.TYPE_UINT64, opt, None, True),
        ("float_value", 12, T.TYPE_FLOAT, opt, None, True), ("double_value", 13, T.TYPE_DOUBLE, opt, None, True),
        ("boolean_value", 14, T.TYPE_BOOL, opt, None, True), ("string_value", 15, T.TYPE_STRING, opt, None, True),
        ("bytes_value", 16, T.TYPE_BYTES, opt, None, True)],
        oneof="value", parent=payload)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    payload_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))
    return payload_class, payload_class.Metric


Payload, Metric = _build_schema()


class SparkplugError(ValueError):
    """A payload or metric the twin cannot read: the message says which and why."""


@dataclass(frozen=True)
class Topic:
    group: str
    message: str  # NBIRTH, DDATA, ...
    edge_node: str
    device: str | None = None

    @property
    def node_key(self) -> tuple[str, str]:
        return self.group, self.edge_node

    def __str__(self) -> str:
        return "/".join(p for p in (NAMESPACE, self.group, self.message, self.edge_node, self.device) if p)


def parse_topic(topic: str) -> Topic | None:
    """A Sparkplug B topic's parts, or None for any other topic (STATE included)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in NODE_MESSAGES + DEVICE_MESSAGES:
        return None
    if (len(parts) == 5) != (parts[2] in DEVICE_MESSAGES):
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


def now_ms() -> int:
    return int(time.time() * 1000)


def metric_value(metric) -> object:
    """A metric's value in Python terms: int, float, bool, str, a tuple of numbers (arrays), or None (null)."""
    if metric.is_null:
        return None
    kind, field = metric.datatype, metric.WhichOneof("value")
    if field is None:
        return None
    raw = getattr(metric, field)
    if kind in _SIGNED_BITS and field in ("int_value", "long_value"):
        bits = _SIGNED_BITS[kind]
        raw &= (1 << bits) - 1
        return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw  # two's complement, as the spec stores it
    if kind in ARRAY_FORMATS:
        code = ARRAY_FORMATS[kind]
        size = struct.calcsize(code)
        if len(raw) % size:
            raise SparkplugError(f"metric {metric.name or metric.alias}: {len(raw)} bytes are not a whole array of "
                                 f"{code!r} values")
        return struct.unpack(f"<{len(raw) // size}{code}", raw)
    if kind == BOOLEAN_ARRAY:
        count = struct.unpack_from("<I", raw)[0]
        return tuple(bool(raw[4 + i // 8] & (0x80 >> (i % 8))) for i in range(count))
    return raw


def set_metric_value(metric, kind: int, value: Any) -> None:
    """Fill a metric's datatype and value field (or is_null) the way the spec encodes that type."""
    metric.datatype = kind
    if value is None:
        metric.is_null = True
    elif kind in _INT_FIELD:
        metric.int_value = int(value) & 0xFFFFFFFF
    elif kind in _LONG_FIELD:
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif kind == FLOAT:
        metric.float_value = float(value)
    elif kind == DOUBLE:
        metric.double_value = float(value)
    elif kind == BOOLEAN:
        metric.boolean_value = bool(value)
    elif kind in _TEXT_TYPES:
        metric.string_value = str(value)
    elif kind in ARRAY_FORMATS:
        items = list(value)
        metric.bytes_value = struct.pack(f"<{len(items)}{ARRAY_FORMATS[kind]}", *items)
    elif kind == BYTES:
        metric.bytes_value = bytes(value)
    else:
        raise SparkplugError(f"metric {metric.name}: writing datatype {kind} is not supported")


def add_metric(payload, name: str | None, kind: int, value: Any, *, alias: int | None = None,
               timestamp: int | None = None):
    metric = payload.metrics.add()
    if name is not None:
        metric.name = name
    if alias is not None:
        metric.alias = alias
    metric.timestamp = timestamp if timestamp is not None else now_ms()
    set_metric_value(metric, kind, value)
    return metric


def metric_quality(metric) -> int | None:
    """The metric's Quality property (192 good, 500 stale, 0 bad), or None when it has none."""
    if not metric.HasField("properties"):
        return None
    for key, item in zip(metric.properties.keys, metric.properties.values, strict=False):
        if key.lower() == "quality" and item.WhichOneof("value") in ("int_value", "long_value"):
            return int(getattr(item, item.WhichOneof("value")))
    return None


def bd_seq(payload) -> int | None:
    """The birth/death sequence number a NBIRTH or NDEATH carries, or None."""
    for metric in payload.metrics:
        if metric.name == BD_SEQ_METRIC:
            value = metric_value(metric)
            return int(value) if isinstance(value, int) else None
    return None


def rebirth_request(timestamp: int | None = None) -> bytes:
    """The NCMD payload that asks an edge node to publish its births again (spec 6.4.3)."""
    payload = Payload(timestamp=timestamp or now_ms())
    add_metric(payload, REBIRTH_METRIC, BOOLEAN, True)
    return payload.SerializeToString()
