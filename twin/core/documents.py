"""YAML configuration files read so that every error can name its line.

Binding files, plant files and site files are validated by pydantic models on their plain values, but an
integration engineer wants "bindings.yaml:42: ..." rather than a path into the data. `YamlDocument` keeps the
composed nodes (which carry lines) beside the loaded values, turns a location such as
("bindings", 3, "limits", "min") into a line, and refuses a key written twice, which YAML would otherwise resolve
by silently dropping the first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from twin.core.errors import FileError
from twin.core.schema import Location

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: big files load 5x faster


class YamlDocument:
    """A YAML file composed and loaded once each; errors are raised as `error_type(path, message, line=...)`.

    `root` is None and `data` None for an empty file: each kind of file says itself what it must hold."""

    def __init__(self, path: str | Path, error_type: Callable[..., FileError]):
        self.path = Path(path)
        self._error_type = error_type
        try:
            text = self.path.read_text()
            self.root: yaml.Node | None = yaml.compose(text, Loader=LOADER)
            self.data: object = yaml.load(text, Loader=LOADER)
        except FileNotFoundError:
            raise error_type(self.path, "file not found") from None
        except OSError as error:
            raise error_type(self.path, f"cannot read it ({error.strerror})") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            raise error_type(self.path, f"not valid YAML: {getattr(error, 'problem', error)}",
                             line=mark.line + 1 if mark else None) from None

    def line(self, loc: Location) -> int:
        """The line of the last key (or list item) of `loc` that the file has; 1-based. A missing key: the first
        line of the mapping that lacks it."""
        if self.root is None:
            return 1
        node, line = self.root, self.root.start_mark.line + 1
        for step in loc:
            if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                node = node.value[step]
                line = node.start_mark.line + 1
            elif isinstance(node, yaml.MappingNode):
                entry = next(((key, value) for key, value in node.value if key.value == str(step)), None)
                if entry is None:
                    return node.start_mark.line + 1
                node, line = entry[1], entry[0].start_mark.line + 1
            else:
                break
        return line

    def value(self, loc: Location) -> object:
        """The plain value at `loc`, None where the file has none."""
        value = self.data
        for step in loc:
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and isinstance(step, int) and step < len(value):
                value = value[step]
            else:
                return None
        return value

    def duplicate_key(self) -> tuple[Location, int] | None:
        """The first key written twice in one mapping: its location (the key last) and the line of its second
        occurrence; None if there is none."""
        def walk(node: yaml.Node, loc: Location) -> tuple[Location, int] | None:
            if isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    if found := walk(item, (*loc, index)):
                        return found
            elif isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key, value in node.value:
                    if key.value in seen:
                        return (*loc, key.value), key.start_mark.line + 1
                    seen.add(key.value)
                    if found := walk(value, (*loc, key.value)):
                        return found
            return None

        return walk(self.root, ()) if self.root is not None else None
