"""Column mapping: which columns of a file hold the instruction, its input, the output and the system prompt, or
which column holds a whole conversation (a list of turns, each with a role and a text).

Written as ``instruction=question,output=answer`` (the CLI's ``--columns``, the stored mapping of an upload, the
adapter's manifest) or ``conversation=dialog,role=speaker,content=text,user=customer|client,assistant=bot``. A mapped
row becomes an Alpaca or an OpenAI messages row and goes through the same row checks; a problem names the file's
own column (``Row 3: field 'answer' is empty.``). ``guess`` proposes a mapping from the columns' names (English and
Chinese) and, for a conversation, from what its values hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from .errors import DatasetError

FIELDS = ("instruction", "input", "output", "system")
TURN_KEYS = ("conversation", "role", "content")
ROLE_KEYS = ("user", "assistant")
KEYS = (*FIELDS, *TURN_KEYS, *ROLE_KEYS)
SPEC_MAX_CHARS = 2000

# Names that make a column's meaning likely, best first (compared in lower case, with spaces, '-' and '.' as '_').
NAMES = {
    "instruction": ("instruction", "question", "prompt", "query", "problem", "input", "user", "human", "request",
                    "instruction_text", "question_text", "问题", "指令", "提问", "问", "输入", "用户"),
    "input": ("input", "context", "input_text", "additional_input", "输入", "上下文", "补充"),
    "output": ("output", "answer", "response", "completion", "target", "reply", "solution", "assistant", "gpt",
               "output_text", "answer_text", "回答", "答案", "回复", "输出", "答"),
    "system": ("system", "system_prompt", "system_message", "系统", "系统提示", "系统提示词"),
    "conversation": ("conversation", "conversations", "messages", "dialog", "dialogue", "chat", "turns", "对话"),
}  # fmt: skip
ROLE_NAMES = ("role", "from", "speaker", "author", "sender")
CONTENT_NAMES = ("content", "value", "text", "message", "utterance")
# Role names beyond the three formats' own (human / user, gpt / assistant, system), taken when guessing.
EXTRA_ROLES = {
    "user": ("customer", "client", "usr", "question", "prompter", "person", "用户", "提问者"),
    "assistant": ("bot", "model", "ai", "chatbot", "agent", "answer", "助手", "机器人"),
}
KNOWN_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True)
class ColumnMap:
    instruction: str = ""
    input: str = ""
    output: str = ""
    system: str = ""
    conversation: str = ""
    role: str = ""  # key of a turn's role (default: role, else from)
    content: str = ""  # key of a turn's text (default: content, else value)
    user: tuple[str, ...] = ()  # role names that mean user, beyond human / user
    assistant: tuple[str, ...] = ()  # role names that mean assistant, beyond gpt / assistant

    @property
    def format(self) -> str:
        return "messages" if self.conversation else "alpaca"

    def spec(self) -> str:
        """``instruction=question,output=answer``: the mapping as the CLI takes it, in a stable order."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value:
                parts.append(f"{f.name}={'|'.join(value) if isinstance(value, tuple) else value}")
        return ",".join(parts)

    def columns(self) -> list[str]:
        """The file's columns it reads."""
        return [c for c in (*(getattr(self, k) for k in FIELDS), self.conversation) if c]

    def role_of(self, name: str) -> str | None:
        if name in self.user:
            return "user"
        if name in self.assistant:
            return "assistant"
        return KNOWN_ROLES.get(name)


def parse(spec: str | ColumnMap | None) -> ColumnMap | None:
    """A mapping from its text (see the module's docstring); None for an empty one. ``DatasetError`` names the part
    at fault: an unknown key, a key or a column given twice, no output."""
    if spec is None or isinstance(spec, ColumnMap):
        return check(spec) if spec else None
    text = str(spec).strip()
    if not text:
        return None
    if len(text) > SPEC_MAX_CHARS:
        raise DatasetError("columns_bad", part=text[:40] + "...", expected=", ".join(KEYS))
    values: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not part.strip():
            continue
        if not sep or not value or key not in KEYS:
            raise DatasetError("columns_bad", part=part.strip()[:60], expected=", ".join(KEYS))
        if key in values:
            raise DatasetError("columns_key_twice", key=key)
        values[key] = tuple(v.strip() for v in value.split("|") if v.strip()) if key in ROLE_KEYS else value
    return check(ColumnMap(**values))


def check(mapping: ColumnMap) -> ColumnMap:
    used: dict[str, str] = {}
    for key in (*FIELDS, "conversation"):
        column = getattr(mapping, key)
        if column and column in used:
            raise DatasetError("columns_twice", column=column[:60], first=used[column], second=key)
        if column:
            used[column] = key
    if mapping.conversation and (mapping.instruction or mapping.input or mapping.output):
        raise DatasetError("columns_mixed")
    if not mapping.conversation and not mapping.output:
        raise DatasetError("columns_no_output")
    if not mapping.conversation and not mapping.instruction:
        raise DatasetError("columns_no_instruction")
    return mapping


def check_against(mapping: ColumnMap, columns: list[str], file: str) -> None:
    """Every column the mapping reads is one of the file's."""
    for column in mapping.columns():
        if column not in columns:
            raise DatasetError("columns_missing", file=file, column=column[:60], columns=columns[:20] or ["none"])


def _norm(name: str) -> str:
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower())


def guess(columns: list[str], rows: list[Any]) -> ColumnMap | None:
    """The mapping the columns' names (and a conversation column's values) make likely, or None when there is no
    instruction and output, nor a conversation, to be found."""
    sample = [r for r in rows[:50] if isinstance(r, dict)]
    conversation = next((c for c in columns if _is_conversation(c, sample)), None)
    if conversation:
        return _conversation_guess(conversation, columns, sample)
    by_name = {_norm(c): c for c in columns}
    chosen: dict[str, str] = {}
    for key in ("instruction", "output", "input", "system"):
        for name in NAMES[key]:
            column = by_name.get(name)
            if column and column not in chosen.values():
                chosen[key] = column
                break
    if "instruction" not in chosen or "output" not in chosen:
        return None
    return ColumnMap(**chosen)


def _is_conversation(column: str, sample: list[dict]) -> bool:
    values = [turns(r.get(column)) for r in sample if r.get(column) is not None]
    looks = bool(values) and all(isinstance(v, list) and v and all(isinstance(t, dict) for t in v) for v in values)
    return looks and (_norm(column) in NAMES["conversation"] or len(values) == len(sample))


def _conversation_guess(column: str, columns: list[str], sample: list[dict]) -> ColumnMap:
    keys = list(dict.fromkeys(str(k) for r in sample for t in turns(r.get(column)) or [] for k in t))
    role = next((k for k in ROLE_NAMES if k in keys), "")
    content = next((k for k in CONTENT_NAMES if k in keys), "")
    names = {str(t.get(role)) for r in sample for t in turns(r.get(column)) or [] if role and t.get(role)}
    user = tuple(sorted(n for n in names if n.lower() in EXTRA_ROLES["user"]))
    assistant = tuple(sorted(n for n in names if n.lower() in EXTRA_ROLES["assistant"]))
    by_name = {_norm(c): c for c in columns if c != column}
    system = next((by_name[n] for n in NAMES["system"] if n in by_name), "")
    # role / content are left out when they are a format's own keys (role / content, from / value)
    default_keys = (role, content) in (("role", "content"), ("from", "value"))
    return ColumnMap(system=system, conversation=column, role="" if default_keys else role,
                     content="" if default_keys else content, user=user, assistant=assistant)  # fmt: skip


def turns(value: Any) -> Any:
    """A conversation cell: a list as it is, or a JSON list written as text (a CSV cell)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to read: the row check says so
            return value
    return value


def apply(mapping: ColumnMap, row: Any) -> tuple[Any, dict[str, str]]:
    """The row as an Alpaca or messages row, and how to name its fields in a problem (the file's own names)."""
    if not isinstance(row, dict):
        return row, {}
    if not mapping.conversation:
        mapped = {key: cell(row.get(getattr(mapping, key))) for key in FIELDS if getattr(mapping, key)}
        for key in FIELDS:  # a required column that is absent from this row stays absent (missing, not empty)
            if getattr(mapping, key) and getattr(mapping, key) not in row:
                mapped.pop(key)
        return mapped, {key: getattr(mapping, key) for key in FIELDS if getattr(mapping, key)}
    role_key, text_key = mapping.role or "", mapping.content or ""
    value = turns(row.get(mapping.conversation)) if mapping.conversation in row else None
    names = {"messages": mapping.conversation}
    mapped: dict[str, Any] = {}
    if mapping.conversation in row:
        mapped["messages"] = _turns(value, mapping, role_key, text_key) if isinstance(value, list) else value
    first = next((t for t in value if isinstance(t, dict)), {}) if isinstance(value, list) else {}
    names["role"] = role_key or ("role" if "role" in first or "from" not in first else "from")
    names["content"] = text_key or ("content" if "content" in first or "value" not in first else "value")
    system = cell(row.get(mapping.system)) if mapping.system else ""
    if system != "" and isinstance(mapped.get("messages"), list):
        mapped["messages"] = [{"role": "system", "content": system}, *(mapped.get("messages") or [])]
        names["system_first"] = mapping.system
    return mapped, names


def _turns(value: list, mapping: ColumnMap, role_key: str, text_key: str) -> list:
    out = []
    for turn in value:
        if not isinstance(turn, dict):
            out.append(turn)
            continue
        rk = role_key or ("role" if "role" in turn or "from" not in turn else "from")
        tk = text_key or ("content" if "content" in turn or "value" not in turn else "value")
        mapped: dict[str, Any] = {}
        if rk in turn:
            role = turn[rk]
            mapped["role"] = (mapping.role_of(role) or role) if isinstance(role, str) else role
        if tk in turn:
            mapped["content"] = cell(turn[tk]) if turn[tk] is not None else None
        out.append(mapped)
    return out


def cell(value: Any) -> Any:
    """A mapped cell as the row check reads it: an empty cell (null, NaN) is empty text, a number its text (as a
    spreadsheet shows it); a list or an object stays what it is (and is refused as not text)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return value


def rename_field(field: str, names: dict[str, str]) -> str:
    """A problem's field in the canonical row (``output``, ``messages[2].role``) as the file names it."""
    if "messages" not in names:
        return names.get(field, field)
    shift = 1 if "system_first" in names else 0
    match = re.fullmatch(r"messages(?:\[(\d+)\](?:\.(role|content))?)?", field)
    if not match:
        return field
    if match.group(1) is None:
        return names["messages"]
    index = int(match.group(1)) - shift
    if index < 0:
        return names["system_first"]
    where = f"{names['messages']}[{index}]"
    return f"{where}.{names[match.group(2)]}" if match.group(2) else where
