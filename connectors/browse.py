"""Discovery: walk a server's address space and draft a binding file from it.

`twin opcua browse opc.tcp://HOST:PORT` prints the tree below the Objects folder (node id,
browse name, data type, access level) and, with `--out`, writes a binding file with one
entry per variable. With `--scene`, variables are matched to prims by the browse name of
their parent object (a PLC object `Conveyor1` feeds the prim named `Conveyor1`); variables
without a match are drafted under /Unmapped with a comment, for the engineer to finish.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from asyncua import Client, Node, ua

_KINDS = {
    ua.VariantType.Boolean: "bool", ua.VariantType.String: "text", ua.VariantType.LocalizedText: "text",
    ua.VariantType.DateTime: "float", ua.VariantType.Float: "float", ua.VariantType.Double: "float",
    ua.VariantType.ExtensionObject: "json", ua.VariantType.Guid: "text", ua.VariantType.ByteString: "text",
    **{t: "int" for t in (ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
                          ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64,
                          ua.VariantType.StatusCode)},
}


@dataclass
class BrowsedNode:
    node_id: str  # with the namespace URI (nsu=...), stable across servers' namespace order
    browse_name: str  # "ns:Name"
    name: str
    node_class: str
    depth: int
    data_type: str = ""
    access: str = ""  # "r", "w", "rw" or ""
    width: int = 1
    kind: str = ""
    parents: tuple[str, ...] = ()  # browse names (plain) from Objects down to the parent
    children: list[BrowsedNode] = field(default_factory=list)


def _access(level: int) -> str:
    read = bool(level & ua.AccessLevel.CurrentRead.mask)
    write = bool(level & ua.AccessLevel.CurrentWrite.mask)
    return ("r" if read else "") + ("w" if write else "")


async def browse(endpoint: str, depth: int = 8) -> list[BrowsedNode]:
    """The variables and objects below Objects, `depth` levels deep, as a tree."""
    async with Client(endpoint, timeout=10) as client:
        namespaces = await client.get_namespace_array()

        def stable_id(node_id: ua.NodeId) -> str:
            text = node_id.to_string()
            if node_id.NamespaceIndex == 0:
                return text
            rest = text.split(";", 1)[1]
            return f"nsu={namespaces[node_id.NamespaceIndex]};{rest}"

        async def walk(node: Node, level: int, parents: tuple[str, ...]) -> list[BrowsedNode]:
            found = []
            for child in await node.get_children():
                node_class = await child.read_node_class()
                if node_class not in (ua.NodeClass.Object, ua.NodeClass.Variable):
                    continue
                name = await child.read_browse_name()
                item = BrowsedNode(stable_id(child.nodeid), f"{name.NamespaceIndex}:{name.Name}", name.Name,
                                   node_class.name, level, parents=parents)
                if child.nodeid.NamespaceIndex == 0 and level == 0:
                    continue  # the standard Server object and friends
                if node_class == ua.NodeClass.Variable:
                    variant = await child.read_data_type_as_variant_type()
                    item.data_type = variant.name
                    item.kind = _KINDS.get(variant, "text")
                    level_value = (await child.read_attribute(ua.AttributeIds.AccessLevel)).Value
                    item.access = _access(level_value.Value if level_value is not None else 0)
                    if await child.read_value_rank() >= 1:
                        dimensions = await child.read_array_dimensions()
                        value = await child.read_value()
                        item.width = (dimensions[0] if dimensions and dimensions[0] else len(value or []))
                if level + 1 < depth:
                    item.children = await walk(child, level + 1, (*parents, name.Name))
                found.append(item)
            return found

        return await walk(client.nodes.objects, 0, ())


def flatten(tree: list[BrowsedNode]) -> list[BrowsedNode]:
    items = []
    for node in tree:
        items.append(node)
        items.extend(flatten(node.children))
    return items


def format_tree(tree: list[BrowsedNode]) -> str:
    lines = []
    for node in flatten(tree):
        details = f"  {node.data_type}{'[' + str(node.width) + ']' if node.width > 1 else ''}  {node.access}" \
            if node.node_class == "Variable" else ""
        lines.append(f"{'  ' * node.depth}{node.browse_name}  ({node.node_id}){details}")
    return "\n".join(lines)


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar on one line: node ids may hold quotes, ': ', ' #' or control characters."""
    return yaml.dump(text, Dumper=yaml.SafeDumper, default_style='"', allow_unicode=True,
                     width=math.inf).rstrip("\n")


def _attribute(name: str) -> str:
    """PLC variable names as twin attributes: 'SpindleTemperature' -> 'twin:spindleTemperature'."""
    cleaned = re.sub(r"[^0-9A-Za-z]", "", name) or "value"
    return "twin:" + cleaned[0].lower() + cleaned[1:]


def draft_bindings(tree: list[BrowsedNode], endpoint: str, prims_by_name: dict[str, str] | None = None,
                   server: str = "plc") -> str:
    """A binding file for every variable, matched to prims by their parent object's name."""
    prims_by_name = prims_by_name or {}
    lines = [f"# Drafted by `twin opcua browse {_quoted(endpoint)}`: check every entry before use.", "servers:",
             f"  {_quoted(server)}:", f"    endpoint: {_quoted(endpoint)}", "", "bindings:"]
    targets: set[tuple[str, str]] = set()
    for node in flatten(tree):
        if node.node_class != "Variable" or not node.access:
            continue
        owner = node.parents[-1] if node.parents else ""
        prim = prims_by_name.get(owner)
        if prim is None:
            lines.append(f"  # no prim named {owner!r} in the scene: map this one by hand")
            prim = "/Unmapped/" + (re.sub(r"[^0-9A-Za-z_]", "_", owner) or "Root")
        attr = _attribute(node.name)
        for suffix in range(2, 10_000):  # names that differ only in punctuation would feed one target twice
            if (prim, attr) not in targets:
                break
            attr = f"{_attribute(node.name)}{suffix}"
        targets.add((prim, attr))
        lines += [f"  - server: {_quoted(server)}", f"    node: {_quoted(node.node_id)}", f"    prim: {_quoted(prim)}",
                  f"    attr: {_quoted(attr)}", f"    kind: {node.kind}"]
        if node.width > 1:
            lines.append(f"    width: {node.width}")
        if "w" in node.access:
            lines.append("    direction: " + ("both" if "r" in node.access else "write"))
    return "\n".join(lines) + "\n"


def prims_by_name(layout: Path) -> dict[str, str]:
    """Prim names of a layout -> their paths (the first prim of each name, in stage order)."""
    from pxr import Usd

    stage = Usd.Stage.Open(str(layout))
    found: dict[str, str] = {}
    for prim in stage.Traverse():
        found.setdefault(prim.GetName(), str(prim.GetPath()))
    return found
