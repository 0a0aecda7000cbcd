"""Load and validate instruction datasets: Alpaca, ShareGPT or OpenAI messages, as JSON or JSON Lines, or any
columns of a JSON, CSV / TSV, Parquet or Excel file mapped to those (``columns.py``).

Two steps, like every loader here: bytes -> rows (``tables.py``; file-level problems raise ``DatasetError``), then
row -> ``Record`` of normalised messages (row-level problems are collected as ``RowProblem``, every one
of them, so a person can fix a file in one pass). Whether a file is a JSON array or JSON Lines is decided
by its content, never by its extension. The loader only reads.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import columns as colmap
from .errors import DatasetError
from .parsing import detect_row_format, read_bytes, type_name
from .tables import Table, read_table

__all__ = [
    "FORMATS",
    "DatasetReport",
    "Message",
    "Record",
    "RowProblem",
    "detect_row_format",
    "load_records",
    "read_bytes",
]

logger = logging.getLogger(__name__)

FORMATS = ("alpaca", "sharegpt", "messages", "preference")
FORMAT_NAMES = {"alpaca": "Alpaca", "sharegpt": "ShareGPT", "messages": "OpenAI messages",
                "preference": "preference pairs"}  # fmt: skip
EXPECTED_FIELDS = (
    "Alpaca 'instruction' + 'output', ShareGPT 'conversations', OpenAI 'messages' or preference pairs "
    "'prompt' + 'chosen' + 'rejected'"
)

# The role mapping of the masking rules (docs/contracts.md), used by both conversation formats.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
# (list field, role field, text field) of each conversation format.
TURN_FIELDS = {"sharegpt": ("conversations", "from", "value"), "messages": ("messages", "role", "content")}


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class Record:
    """One valid row. A preference pair (``pairs.py``) is its prompt and chosen answer as ``messages`` (so what
    answers prompts, samples and evaluation, sees the chosen answer as the reference) plus the ``rejected`` one."""

    row: int  # 1-based, as a person counts
    messages: tuple[Message, ...]
    rejected: str = ""  # the rejected answer of a preference pair; "" for an instruction row

    @property
    def is_pair(self) -> bool:
        return bool(self.rejected)


@dataclass(frozen=True)
class RowProblem:
    row: int  # 1-based
    field: str  # "output", "conversations[2].from", ... or "" for the whole row
    code: str  # stable machine code, see ROW_MESSAGES
    message: str  # one English sentence naming the row and the field
    params: dict  # the values used in the message, so a UI can translate by code
    template: str = ""  # the key of its sentence in ROW_MESSAGES (some templates share a code)


@dataclass
class DatasetReport:
    path: str
    name: str
    sha256: str
    format: str
    total_rows: int
    records: list[Record] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    kind: str = "json"  # tables.KINDS: how the file was read
    columns: str = ""  # the column mapping used (columns.ColumnMap.spec()), "" for one of the three formats
    guessed: bool = False  # the mapping was guessed from the columns' names
    sheet: str = ""  # the Excel sheet read

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
            **({"columns": self.columns, "columns_guessed": self.guessed} if self.columns else {}),
            **({"sheet": self.sheet} if self.sheet else {}),
            "errors": [{"row": p.row, "field": p.field, "code": p.code, "message": p.message} for p in self.problems],
        }

    def usable(self, skip_invalid: bool = False) -> list[Record]:
        """The records to train on; refuses a file with invalid rows unless ``skip_invalid``."""
        if self.problems and not skip_invalid:
            first = self.problems[0]
            raise DatasetError(
                "invalid_rows",
                file=self.name,
                invalid_rows=self.invalid_rows,
                total_rows=self.total_rows,
                first_message=first.message,
            )
        if not self.records:
            raise DatasetError(
                "no_valid_rows",
                file=self.name,
                invalid_rows=self.invalid_rows,
                total_rows=self.total_rows,
            )
        return list(self.records)


def load_records(
    path: str | Path,
    fmt: str = "auto",
    *,
    max_bytes: int | None = None,
    columns: str | colmap.ColumnMap | None = None,
    sheet: str = "",
    guess: bool = True,
) -> DatasetReport:
    """Read ``path``, detect (or take) its format and validate every row.

    ``columns``: a column mapping (``columns.parse``) for a file in none of the three formats; without one, such a
    file's columns are mapped by their names when ``guess`` and the names make it likely. ``sheet``: the Excel
    sheet to read (default: the first). File-level problems raise ``DatasetError``; row-level problems are listed
    in the report.
    """
    path = Path(path)
    check_format_option(fmt, path.name)
    colmap.parse(columns)  # a bad mapping is said before the file is read
    return records_of(read_table(path, max_bytes, sheet), path, fmt, columns=columns, guess=guess)


def records_of(table: Table, path: str | Path, fmt: str = "auto", *, columns: str | colmap.ColumnMap | None = None,
               guess: bool = True) -> DatasetReport:  # fmt: skip
    """``load_records`` of a file already read (``tables.read_table``): the same checks, the same report."""
    path = Path(path)
    fmt = check_format_option(fmt, path.name)
    mapping = colmap.parse(columns)
    guessed = False
    if mapping is None and needs_columns(table):
        mapping = colmap.guess(table.columns, table.rows) if guess else None
        guessed = mapping is not None
        if mapping is None and table.kind != "json":
            raise DatasetError("needs_columns", file=path.name, columns=table.columns[:20] or ["none"])
    if mapping is not None:
        colmap.check_against(mapping, table.columns, path.name)
        if fmt not in ("auto", mapping.format):
            raise DatasetError("columns_format", file=path.name, format=fmt, columns=mapping.spec()[:200])
        fmt = mapping.format
    report = validate_rows(table, fmt, mapping)
    report.path, report.kind, report.sheet, report.guessed = str(path), table.kind, table.sheet, guessed
    report.columns = mapping.spec() if mapping else ""
    logger.info("Loaded %s: %s, %d rows, %d invalid", path.name, report.format, report.total_rows, report.invalid_rows)
    return report


def needs_columns(table: Table) -> bool:
    """Whether the file has rows with fields, none of them in one of the three formats (its columns must be mapped to
    train on it)."""
    return any(isinstance(row, dict) for row in table.rows) and not any(detect_row_format(row) for row in table.rows)


def validate_rows(table: Table, fmt: str, mapping: colmap.ColumnMap | None) -> DatasetReport:
    rows = table.rows
    if mapping is not None:
        mapped = [colmap.apply(mapping, row) for row in rows]
        rows, names = [m[0] for m in mapped], [m[1] for m in mapped]
    kinds = [detect_row_format(row) for row in rows] if fmt == "auto" else [fmt] * len(rows)
    file_fmt = majority_format(kinds, rows, table.name) if fmt == "auto" else fmt
    report = DatasetReport(table.name, table.name, table.sha256, file_fmt, len(rows))
    for n, (row, kind) in enumerate(zip(rows, kinds, strict=True), start=1):
        problems = Problems(n)
        messages = validate_row(row, kind, file_fmt, problems)
        rejected = ""
        if file_fmt == "preference" and messages is not None:
            messages, rejected = messages
        if problems.found and mapping is not None:
            problems.found = [renamed(p, colmap.rename_field(p.field, names[n - 1])) for p in problems.found]
        if problems.found:
            report.problems.extend(problems.found)
        else:
            report.records.append(Record(n, messages, rejected))
    return report


def renamed(problem: RowProblem, field: str) -> RowProblem:
    """The problem naming the file's own column (``answer``) in place of the mapped field (``output``)."""
    if field == problem.field:
        return problem
    params = {**problem.params, "field": field}
    return RowProblem(problem.row, field, problem.code, ROW_MESSAGES[problem.template].format(**params), params,
                      problem.template)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# File level: bytes -> rows


def check_format_option(fmt: str, name: str) -> str:
    value = str(fmt).strip().lower()
    if value not in ("auto", *FORMATS):
        raise DatasetError("bad_format_option", file=name, format=fmt, expected=["auto", *FORMATS])
    return value


def majority_format(kinds: list[str | None], rows: list, name: str) -> str:
    """The most common row format (ties: the one seen first); refuses a file with no recognisable row."""
    counts = Counter(k for k in kinds if k)
    if not counts:
        first = rows[0]
        if not isinstance(first, dict):
            raise DatasetError("rows_not_objects", file=name, found=type_name(first), expected=EXPECTED_FIELDS)
        keys = [str(k) for k in list(first)[:10]] or ["none"]
        raise DatasetError("unknown_format", file=name, expected=EXPECTED_FIELDS, keys=keys)
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
    "no_user": "Row {row}: field '{field}' has no user turn.",
    "last_not_user": "Row {row}: field '{field}' is the last turn of the prompt and is a {found} turn; "
    "the prompt must end with a user turn.",
    "same_answers": "Row {row}: fields 'chosen' and 'rejected' hold the same answer; a pair needs two different "
    "answers.",
    "not_reply": "Row {row}: field '{field}' must be one assistant answer (a string, one turn, or a list of one "
    "turn), found {found}.",
    "reply_role": "Row {row}: field '{field}' has role {found}; the answer must be an assistant turn.",
    "reply_turns": "Row {row}: field '{field}' must hold one assistant turn, found {count}.",
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
        message = ROW_MESSAGES[template].format(**params)
        self.found.append(RowProblem(self.row, field, code, message, params, template))


def validate_row(row: Any, kind: str | None, file_fmt: str, problems: Problems) -> Any:
    """The row's messages (a pair: its prompt and chosen answer as messages, and the rejected answer), or None with
    its problems added to ``problems``."""
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
    elif file_fmt == "preference":
        from .pairs import pair_messages

        return pair_messages(row, problems)
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


def conversation_messages(
    row: dict, fmt: str, problems: Problems, *, list_key: str = "", system_field: bool | None = None,
    last: str = "assistant",
) -> tuple[Message, ...] | None:  # fmt: skip
    """ShareGPT or OpenAI messages: optional system first, then user / assistant alternating, ending on ``last``
    (a preference pair's prompt ends on the user's turn). ``list_key``: the turns' field when not the format's own;
    ``system_field``: whether the row may have a top-level ``system`` (default: ShareGPT only)."""
    before = len(problems.found)
    own_key, role_key, text_key = TURN_FIELDS[fmt]
    list_key = list_key or own_key
    system_field = fmt == "sharegpt" if system_field is None else system_field
    system = text_field(problems, row, "system", "system", required=False) if system_field else None
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

    if last not in roles and "?" not in roles:  # an unreadable turn may be the missing one
        problems.add(list_key, f"no_{last}")
    elif roles[-1] not in (last, "?"):
        problems.add(f"{list_key}[{len(turns) - 1}].{role_key}", f"last_not_{last}", found=roles[-1])
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
