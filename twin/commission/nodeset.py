"""UANodeSet XML as other stacks read it.

asyncua's exporter writes an ExtensionObject's TypeId as its DataType (Argument i=296, Range i=884), where the
standard's nodesets name the type's DefaultXml encoding (i=297, i=886); node-opcua then reads the Step method's
arguments and the EURange values as empty. asyncua's own importer goes by the body's element name, so both read
the corrected file.
"""

from __future__ import annotations

import re
from pathlib import Path

from asyncua import ua

_TYPE_ID = re.compile(r"(<uax:TypeId>\s*<uax:Identifier>)i=(\d+)(</uax:Identifier>)")


def _encoding_id(match: re.Match[str]) -> str:
    name = ua.ObjectIdNames.get(int(match[2]), "")
    encoding = getattr(ua.ObjectIds, f"{name}_Encoding_DefaultXml", None)
    return f"{match[1]}i={encoding if encoding is not None else match[2]}{match[3]}"


def use_xml_encoding_type_ids(path: str | Path) -> None:
    """Rewrite the ExtensionObject TypeIds of an asyncua-exported nodeset to their DefaultXml encodings."""
    path = Path(path)
    path.write_text(_TYPE_ID.sub(_encoding_id, path.read_text(encoding="utf-8")), encoding="utf-8")
