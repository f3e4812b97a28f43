"""A small TOML writer for the files tens-control writes itself (prescriptions, enrolments,
keys, signed overrides). ``tomllib`` only reads; these files have known, simple shapes: scalars,
tables, arrays of scalars and arrays of tables."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else string(key)


def string(value: str) -> str:
    """``value`` as a TOML basic string."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value(item: Any) -> str:
    """One TOML value."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if not math.isfinite(item):
            raise ValueError(f"cannot write {item} in TOML here")
        text = repr(item)
        return text if any(c in text for c in ".en") else f"{text}.0"
    if isinstance(item, str):
        return string(item)
    if isinstance(item, datetime):
        if item.tzinfo is None:
            raise ValueError("datetimes must carry a time zone")
        return item.isoformat()
    if isinstance(item, date):
        return item.isoformat()
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"cannot write {type(item).__name__} as a TOML value")


def _is_table(item: Any) -> bool:
    return isinstance(item, dict)


def _is_table_array(item: Any) -> bool:
    return isinstance(item, list | tuple) and bool(item) and all(_is_table(v) for v in item)


def emit_table(lines: list[str], prefix: str, table: Mapping[str, Any]) -> None:
    """Scalars first, then sub-tables, then arrays of tables (TOML's required order)."""
    for key, item in table.items():
        if item is None or _is_table(item) or _is_table_array(item):
            continue
        if isinstance(item, list | tuple) and not item:
            lines.append(f"{_key(key)} = []")
            continue
        lines.append(f"{_key(key)} = {value(item)}")
    for key, item in table.items():
        if _is_table(item):
            name = f"{prefix}{_key(key)}"
            lines.extend(["", f"[{name}]"])
            emit_table(lines, f"{name}.", item)
    for key, item in table.items():
        if _is_table_array(item):
            name = f"{prefix}{_key(key)}"
            for entry in item:
                lines.extend(["", f"[[{name}]]"])
                emit_table(lines, f"{name}.", entry)


def dumps(data: Mapping[str, Any], header: Iterable[str] = ()) -> str:
    """``data`` as a TOML document, after the ``header`` comment lines (without ``#``)."""
    lines = [f"# {line}" if line else "#" for line in header]
    if lines:
        lines.append("")
    emit_table(lines, "", data)
    return "\n".join(lines) + "\n"
