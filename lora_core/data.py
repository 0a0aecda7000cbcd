"""Load and validate instruction datasets: Alpaca, ShareGPT or OpenAI messages, as JSON or JSON Lines.

Two steps, like every loader here: bytes -> rows (file-level problems raise ``DatasetError``), then
row -> ``Record`` of normalised messages (row-level problems are collected as ``RowProblem``, every one
of them, so a person can fix a file in one pass). Whether a file is a JSON array or JSON Lines is decided
by its content, never by its extension. The loader only reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DatasetError

__all__ = ["FORMATS", "DatasetReport", "Message", "Record", "RowProblem", "detect_row_format", "load_records"]

logger = logging.getLogger(__name__)

FORMATS = ("alpaca", "sharegpt", "messages")
FORMAT_NAMES = {"alpaca": "Alpaca", "sharegpt": "ShareGPT", "messages": "OpenAI messages"}
EXPECTED_FIELDS = "Alpaca 'instruction' + 'output', ShareGPT 'conversations' or OpenAI 'messages'"

# DESIGN.md's role mapping, used by both conversation formats.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
# (list field, role field, text field) of each conversation format.
TURN_FIELDS = {"sharegpt": ("conversations", "from", "value"), "messages": ("messages", "role", "content")}

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class Record:
    row: int  # 1-based, as a person counts
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class RowProblem:
    row: int  # 1-based
    field: str  # "output", "conversations[2].from", ... or "" for the whole row
    code: str  # stable machine code, see ROW_MESSAGES
    message: str  # one English sentence naming the row and the field
    params: dict  # the values used in the message, so a UI can translate by code


@dataclass
class DatasetReport:
    path: str
    name: str
    sha256: str
    format: str
    total_rows: int
    records: list[Record] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def valid_rows(self) -> int:
        return len(self.records)

    @property
    def invalid_rows(self) -> int:
        return len({p.row for p in self.problems})

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {
            "file": self.name,
            "format": self.format,
            "rows": self.total_rows,
            "valid_rows": self.valid_rows,
            "invalid_rows": self.invalid_rows,
            "valid": self.ok,
            "errors": [{"row": p.row, "field": p.field, "code": p.code, "message": p.message} for p in self.problems],
        }

    def usable(self, skip_invalid: bool = False) -> list[Record]:
        """The records to train on; refuses a file with invalid rows unless ``skip_invalid``."""
        if self.problems and not skip_invalid:
            first = self.problems[0]
            raise DatasetError(
                f"{self.invalid_rows} of {self.total_rows} rows in '{self.name}' are invalid; first: {first.message}",
                code="invalid_rows",
                file=self.name,
                invalid_rows=self.invalid_rows,
                total_rows=self.total_rows,
                row=first.row,
                field=first.field,
                first_code=first.code,
                first_message=first.message,
            )
        if not self.records:
            raise DatasetError(
                f"No row of '{self.name}' is usable ({self.invalid_rows} of {self.total_rows} rows are invalid).",
                code="no_valid_rows",
                file=self.name,
                invalid_rows=self.invalid_rows,
                total_rows=self.total_rows,
            )
        return list(self.records)


def load_records(path: str | Path, fmt: str = "auto", *, max_bytes: int | None = None) -> DatasetReport:
    """Read ``path``, detect (or take) its format and validate every row.

    File-level problems raise ``DatasetError``; row-level problems are listed in the report.
    """
    path = Path(path)
    fmt = check_format_option(fmt, path.name)
    data = read_bytes(path, max_bytes)
    rows = parse_rows(decode_text(data, path.name), path.name)
    if not rows:
        raise DatasetError(f"File '{path.name}' contains no rows.", code="no_rows", file=path.name)
    kinds = [detect_row_format(row) for row in rows] if fmt == "auto" else [fmt] * len(rows)
    file_fmt = majority_format(kinds, rows, path.name) if fmt == "auto" else fmt
    report = DatasetReport(str(path), path.name, hashlib.sha256(data).hexdigest(), file_fmt, len(rows))
    for n, (row, kind) in enumerate(zip(rows, kinds, strict=True), start=1):
        problems = Problems(n)
        messages = validate_row(row, kind, file_fmt, problems)
        if problems.found:
            report.problems.extend(problems.found)
        else:
            report.records.append(Record(n, messages))
    logger.info("Loaded %s: %s, %d rows, %d invalid", path.name, file_fmt, len(rows), report.invalid_rows)
    return report


def detect_row_format(row: object) -> str | None:
    """The format a row's keys say it is in, or None (not an object, or no known key)."""
    if not isinstance(row, dict):
        return None
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row or "output" in row:
        return "alpaca"
    return None


# ---------------------------------------------------------------------------------------------------------
# File level: bytes -> rows


def check_format_option(fmt: str, name: str) -> str:
    value = str(fmt).strip().lower()
    if value not in ("auto", *FORMATS):
        raise DatasetError(
            f"Unknown dataset format '{fmt}' for '{name}'; expected auto, {', '.join(FORMATS)}.",
            code="bad_format_option",
            file=name,
            format=fmt,
            expected=["auto", *FORMATS],
        )
    return value


def read_bytes(path: Path, max_bytes: int | None) -> bytes:
    name = path.name
    if path.is_dir():
        raise DatasetError(f"'{name}' is a folder, not a dataset file.", code="not_a_file", file=name, path=str(path))
    if not path.is_file():
        raise DatasetError(f"File '{name}' does not exist.", code="file_missing", file=name, path=str(path))
    try:
        size = path.stat().st_size
        # Check the size before reading, so a huge upload is never loaded into memory.
        if max_bytes is not None and size > max_bytes:
            raise DatasetError(
                f"File '{name}' is {human_size(size)}, larger than the {human_size(max_bytes)} limit.",
                code="too_large",
                file=name,
                size=size,
                max_bytes=max_bytes,
            )
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(
            f"File '{name}' cannot be read ({e.strerror or e}).", code="unreadable", file=name, reason=str(e)
        ) from None
    if not data.strip():
        raise DatasetError(f"File '{name}' is empty.", code="empty", file=name)
    return data


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text without its BOM; UTF-16, binary and other encodings are refused, naming the first bad byte."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    utf16_at = utf16_offset(data)
    if utf16_at is not None:
        line, column = byte_position(data, utf16_at)
        raise DatasetError(
            f"File '{name}' is not UTF-8 but looks like UTF-16 (first bad byte at line {line}, column {column}); "
            "save it as UTF-8.",
            code="not_utf8",
            file=name,
            encoding="utf-16",
            line=line,
            column=column,
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = byte_position(data, nul)
        raise DatasetError(
            f"File '{name}' is binary, not a text dataset (NUL byte at line {line}, column {column}).",
            code="binary",
            file=name,
            line=line,
            column=column,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = byte_position(data, e.start)
        raise DatasetError(
            f"File '{name}' is not UTF-8: byte 0x{data[e.start]:02X} at line {line}, column {column} is not valid "
            "UTF-8 (save the file as UTF-8).",
            code="not_utf8",
            file=name,
            line=line,
            column=column,
            byte=f"0x{data[e.start]:02X}",
        ) from None
    if not text.strip():
        raise DatasetError(f"File '{name}' is empty.", code="empty", file=name)
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
        keys = ", ".join(list(value)[:10]) or "none"
        raise DatasetError(
            f"File '{name}' is a top-level object (keys: {keys}), expected a list of rows: a JSON array "
            "[{...}, {...}] or one JSON object per line.",
            code="top_level_object",
            file=name,
            keys=list(value)[:10],
        )
    if not isinstance(value, dict | list):
        raise DatasetError(
            f"File '{name}' holds a single {type_name(value)} value, expected a list of rows.",
            code="top_level_scalar",
            file=name,
            found=type_name(value),
        )
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
    where = {"file": name, "kind": kind}
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as e:
        line, column = e.lineno + line_no - 1, e.colno
        reason = e.msg[:1].lower() + e.msg[1:]
        message = f"File '{name}' is not valid {kind}: {reason} at line {line}, column {column}."
        raise DatasetError(message, code="invalid_json", line=line, column=column, reason=e.msg, **where) from None
    except _Constant as e:
        match = next((m for m in _STRING_OR_CONSTANT.finditer(text) if m.group(1)), None)
        line, column = text_position(text, match.start(1) if match else 0)
        line += line_no - 1
        raise DatasetError(
            f"File '{name}' contains {e.args[0]} at line {line}, column {column}, which is not valid JSON "
            "(use null or a number).",
            code="invalid_json",
            line=line,
            column=column,
            constant=e.args[0],
            **where,
        ) from None
    except RecursionError:
        at = f" at line {line_no}" if kind == "JSON Lines" else ""
        raise DatasetError(
            f"File '{name}' nests lists or objects too deeply to read{at}.", code="too_deep", line=line_no, **where
        ) from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise DatasetError(f"File '{name}' is not valid {kind}: {e}.", code="invalid_json", **where) from None


def majority_format(kinds: list[str | None], rows: list, name: str) -> str:
    """The most common row format (ties: the one seen first); refuses a file with no recognisable row."""
    counts = Counter(k for k in kinds if k)
    if not counts:
        first = rows[0]
        if isinstance(first, dict):
            found = f"has keys {', '.join(map(str, list(first)[:10]))}" if first else "has no keys"
        else:
            found = "is null" if first is None else f"is a {type_name(first)}"
        raise DatasetError(
            f"File '{name}' has no row in a known format (expected {EXPECTED_FIELDS}); row 1 {found}.",
            code="unknown_format",
            file=name,
            expected=EXPECTED_FIELDS,
            found=found,
        )
    return max(counts, key=counts.__getitem__)  # Counter keeps first-seen order, so max keeps the first of a tie


# ---------------------------------------------------------------------------------------------------------
# Row level: row -> messages

ROW_MESSAGES = {
    "missing_field": "Row {row}: field '{field}' is missing.",
    "empty_field": "Row {row}: field '{field}' is empty.",
    "not_string": "Row {row}: field '{field}' must be a string, found {found}.",
    "not_list": "Row {row}: field '{field}' must be a list of turns, found {found}.",
    "not_object": "Row {row}: field '{field}' must be an object, found {found}.",
    "row_not_object": "Row {row}: the row must be an object with fields, found {found}.",
    "unknown_format": "Row {row}: its fields ({keys}) match no known format; expected {expected}.",
    "mixed_format": "Row {row}: the row is in {found_name} format but the file is in {expected_name} format.",
    "unknown_role": "Row {row}: field '{field}' has unknown role '{role}'; expected one of {expected}.",
    "system_not_first": "Row {row}: field '{field}' is a system turn, which is only allowed as the first turn.",
    "system_twice": "Row {row}: field '{field}' is a system turn, but the row already has a 'system' field.",
    "not_alternating": "Row {row}: field '{field}' has role {found} where role {expected} was expected "
    "(turns must alternate user, assistant).",
    "last_not_assistant": "Row {row}: field '{field}' is the last turn and is a {found} turn; "
    "the conversation must end with an assistant turn.",
    "no_assistant": "Row {row}: field '{field}' has no assistant turn.",
}
# Message variants that share a public code.
_CODE_OF = {"row_not_object": "not_object", "system_twice": "system_not_first"}


class Problems:
    """The problems of one row, in the order they are found."""

    def __init__(self, row: int) -> None:
        self.row = row
        self.found: list[RowProblem] = []

    def add(self, field: str, template: str, **params: Any) -> None:
        params = {"row": self.row, "field": field, **params}
        code = _CODE_OF.get(template, template)
        self.found.append(RowProblem(self.row, field, code, ROW_MESSAGES[template].format(**params), params))


def validate_row(row: Any, kind: str | None, file_fmt: str, problems: Problems) -> tuple[Message, ...] | None:
    """The row's messages, or None with its problems added to ``problems``."""
    if not isinstance(row, dict):
        problems.add("", "row_not_object", found=type_name(row))
    elif kind is None:
        keys = [str(k) for k in list(row)[:10]]
        problems.add("", "unknown_format", keys=", ".join(f"'{k}'" for k in keys) or "none", expected=EXPECTED_FIELDS)
    elif kind != file_fmt:
        names = {"found_name": FORMAT_NAMES[kind], "expected_name": FORMAT_NAMES[file_fmt]}
        problems.add("", "mixed_format", found=kind, expected=file_fmt, **names)
    elif file_fmt == "alpaca":
        return alpaca_messages(row, problems)
    else:
        return conversation_messages(row, file_fmt, problems)
    return None


def text_field(problems: Problems, obj: dict, key: str, field: str, *, required: bool) -> str | None:
    """The non-blank string ``obj[key]``; None otherwise (a problem when required, or when not a string).

    An optional field may be absent, null or blank: that means "none".
    """
    if key not in obj or (obj[key] is None and not required):
        if required:
            problems.add(field, "missing_field")
        return None
    value = obj[key]
    if not isinstance(value, str):
        problems.add(field, "not_string", found=type_name(value))
        return None
    if not value.strip():
        if required:
            problems.add(field, "empty_field")
        return None
    return value


def alpaca_messages(row: dict, problems: Problems) -> tuple[Message, ...] | None:
    before = len(problems.found)
    instruction = text_field(problems, row, "instruction", "instruction", required=True)
    extra = text_field(problems, row, "input", "input", required=False)
    output = text_field(problems, row, "output", "output", required=True)
    system = text_field(problems, row, "system", "system", required=False)
    if len(problems.found) > before:
        return None
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return (*([Message("system", system)] if system else []), Message("user", user), Message("assistant", output))


def conversation_messages(row: dict, fmt: str, problems: Problems) -> tuple[Message, ...] | None:
    """ShareGPT or OpenAI messages: optional system first, then user / assistant alternating, ending on assistant."""
    before = len(problems.found)
    list_key, role_key, text_key = TURN_FIELDS[fmt]
    # Only ShareGPT has a top-level system field.
    system = text_field(problems, row, "system", "system", required=False) if fmt == "sharegpt" else None
    turns = row.get(list_key)
    if list_key not in row:
        problems.add(list_key, "missing_field")
        return None
    if not isinstance(turns, list):
        problems.add(list_key, "not_list", found=type_name(turns))
        return None
    if not turns:
        problems.add(list_key, "empty_field")
        return None

    messages = [Message("system", system)] if system else []
    previous = None  # role of the previous user / assistant turn; "?" when it could not be read
    roles = []
    for i, turn in enumerate(turns):
        where = f"{list_key}[{i}]"
        if not isinstance(turn, dict):
            problems.add(where, "not_object", found=type_name(turn))
            roles.append("?")
            previous = "?"
            continue
        role = turn_role(problems, turn, role_key, f"{where}.{role_key}")
        text = text_field(problems, turn, text_key, f"{where}.{text_key}", required=True)
        roles.append(role or "?")
        if role == "system":
            if i > 0 or system:
                problems.add(f"{where}.{role_key}", "system_twice" if i == 0 else "system_not_first")
        elif role is None:
            previous = "?"
        else:
            expected = "assistant" if previous == "user" else "user"
            # After an unreadable turn any role may follow: report the cause once, not a cascade.
            if previous != "?" and role != expected:
                problems.add(f"{where}.{role_key}", "not_alternating", expected=expected, found=role)
            previous = role
        if role and text is not None:
            messages.append(Message(role, text))

    if "assistant" not in roles and "?" not in roles:  # an unreadable turn may be the missing assistant
        problems.add(list_key, "no_assistant")
    elif roles[-1] not in ("assistant", "?"):
        problems.add(f"{list_key}[{len(turns) - 1}].{role_key}", "last_not_assistant", found=roles[-1])
    return None if len(problems.found) > before else tuple(messages)


def turn_role(problems: Problems, turn: dict, key: str, field: str) -> str | None:
    """The turn's role mapped to system / user / assistant, or None with a problem."""
    value = text_field(problems, turn, key, field, required=True)
    if value is None:
        return None
    if value not in ROLES:
        shown = value if len(value) <= 40 else value[:37] + "..."
        problems.add(field, "unknown_role", role=shown, expected=", ".join(ROLES))
        return None
    return ROLES[value]


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


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    return f"{size / 1024:.1f} KB" if size < 1024**2 else f"{size / 1024**2:.1f} MB"
