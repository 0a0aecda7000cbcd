"""Reading a dataset file into rows: bytes -> text -> JSON values, as a JSON array or as JSON Lines (decided by the
content, never the extension). Every refusal is one ``DatasetError`` naming the file and, where it can, the line and
column. Nothing is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import DatasetError

UTF8_BOM = b"\xef\xbb\xbf"


def detect_row_format(row: object) -> str | None:
    """The format a row's keys say it is in, or None (not an object, or no known key)."""
    if not isinstance(row, dict):
        return None
    if "chosen" in row or "rejected" in row:  # before the others: a ShareGPT pair has "conversations" too
        return "preference"
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row or "output" in row:
        return "alpaca"
    return None


def read_bytes(path: Path, max_bytes: int | None) -> bytes:
    name = path.name
    if path.is_dir():
        raise DatasetError("not_a_file", file=name)
    if not path.is_file():
        raise DatasetError("file_missing", file=name)
    try:
        size = path.stat().st_size
        # Check the size before reading, so a huge upload is never loaded into memory.
        if max_bytes is not None and size > max_bytes:
            raise DatasetError("too_large", file=name, size=size, max_bytes=max_bytes)
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError("unreadable", file=name, reason=str(e.strerror or e)) from None
    if not data.strip():
        raise DatasetError("empty", file=name)
    return data


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text without its BOM; UTF-16, binary and other encodings are refused, naming the first bad byte."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    utf16_at = utf16_offset(data)
    if utf16_at is not None:
        line, column = byte_position(data, utf16_at)
        raise DatasetError("utf16", file=name, line=line, column=column)
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = byte_position(data, nul)
        raise DatasetError("binary", file=name, line=line, column=column)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = byte_position(data, e.start)
        raise DatasetError("not_utf8", file=name, line=line, column=column, byte=f"0x{data[e.start]:02X}") from None
    if not text.strip():
        raise DatasetError("empty", file=name)
    return text


def utf16_offset(data: bytes) -> int | None:
    """Where UTF-16 text first shows (its BOM, or its first NUL), or None when the bytes do not look like UTF-16."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return 0
    # Without a BOM, JSON in UTF-16 is mostly ASCII: a NUL in every other byte, on one side only.
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if min(even, odd) > 0 or max(even, odd) <= len(sample) // 4:
        return None
    text = sample.decode("utf-16-le" if odd else "utf-16-be", "replace").lstrip()
    return sample.find(b"\x00") if text[:1] in ("[", "{") else None


def byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a byte offset; the bytes before it are valid UTF-8."""
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", "replace")) + 1


def text_position(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_rows(text: str, name: str) -> list:
    """A JSON array when the text starts with '[', else JSON Lines (one value per non-blank line)."""
    if text.lstrip().startswith("["):
        return parse_json(text, name, "JSON")
    rows = []
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(parse_json(line, name, "JSON Lines", line_no=i))
        except DatasetError:
            if rows or not text.lstrip().startswith("{"):
                raise
            # The first line is not a whole value: a multi-line document. Its own error, or its shape, is the news.
            return refuse_single_value(parse_json(text, name, "JSON"), name, multi_line=True)
    if len(rows) == 1:
        refuse_single_value(rows[0], name, multi_line=False)
    return rows


def refuse_single_value(value: Any, name: str, *, multi_line: bool) -> list:
    """A file that is one value: a scalar, or an object that wraps rows, is not a dataset."""
    if isinstance(value, dict) and (multi_line or detect_row_format(value) is None and wraps_rows(value)):
        raise DatasetError("top_level_object", file=name, keys=[str(k) for k in list(value)[:10]] or ["none"])
    if not isinstance(value, dict | list):
        raise DatasetError("top_level_scalar", file=name, found=type_name(value))
    return [value]


def wraps_rows(obj: dict) -> bool:
    return any(isinstance(v, list) for v in obj.values())


class _Constant(Exception):
    """NaN / Infinity / -Infinity: Python's json accepts them, JSON does not."""


def _reject_constant(name: str) -> None:
    raise _Constant(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# A JSON string (skipped whole) or one of the non-JSON constants.
_STRING_OR_CONSTANT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(-?Infinity|NaN)')


def parse_json(text: str, name: str, kind: str, line_no: int = 1) -> Any:
    """Parse one JSON value; errors name the file, line and column (``line_no`` is where ``text`` starts)."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        reason = e.msg[:1].lower() + e.msg[1:]
        reason = reason.removesuffix(" at")  # "unterminated string starting at": the line and column follow
        line, column = e.lineno + line_no - 1, e.colno
        raise DatasetError("invalid_json", file=name, kind=kind, reason=reason, line=line, column=column) from None
    except _Constant as e:
        match = next((m for m in _STRING_OR_CONSTANT.finditer(text) if m.group(1)), None)
        line, column = text_position(text, match.start(1) if match else 0)
        line += line_no - 1
        raise DatasetError("json_constant", file=name, constant=e.args[0], line=line, column=column) from None
    except RecursionError:
        raise DatasetError("too_deep", file=name, line=line_no) from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise DatasetError("json_value", file=name, kind=kind, reason=str(e)) from None


def type_name(value: Any) -> str:
    """The JSON name of a value's type, as a person reading the file would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"
