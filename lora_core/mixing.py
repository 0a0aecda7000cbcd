"""The data of a run: one dataset, or several mixed, each with a row limit and a weight.

A ``DataSource`` is a file with how to read it (format, column mapping, Excel sheet) and how much of it to use:
``limit`` keeps its first N valid rows (0: all), then ``weight`` scales what is left: 2 uses every row twice, 0.5
a seeded half of them, 1.5 every row once and a seeded half of them once more. Rows are numbered across the mix in
order (the second file's row 1 follows the first file's last row), so a row number names one row of one file.
Repeats are applied to the training rows after the validation split, so no copy of a held-out row is trained on;
for the same reason one dataset (the same file, mapping and sheet) is in a mix once, its weight saying how much.
The manifest records each part: its name, sha256, mapping, and rows used.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .data import DatasetReport, Record, load_records
from .errors import TrainingError

MAX_SOURCES = 16
MAX_WEIGHT = 100.0
MAX_LIMIT = 10_000_000


@dataclass(frozen=True)
class DataSource:
    path: str
    name: str = ""  # as the user knows it (default: the file's name)
    format: str = "auto"
    columns: str = ""  # columns.ColumnMap spec; "" : one of the three formats, else guessed from the names
    sheet: str = ""
    limit: int = 0
    weight: float = 1.0

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name


@dataclass
class Mix:
    """The rows a run uses: a report whose records are every row used once (numbered across the mix), how many
    times each repeated row is used, and what each part gave."""

    report: DatasetReport
    copies: dict[int, int]  # row -> times used, for rows used more than once
    parts: list[dict[str, Any]]


def source_from(value: Any) -> DataSource:
    """A ``DataSource`` from its dict (a run record, an API call); ``TrainingError`` naming the bad entry."""
    if isinstance(value, DataSource):
        return value
    known = {f.name for f in fields(DataSource)}
    if not isinstance(value, dict) or not isinstance(value.get("path"), str) or set(value) - known:
        raise TrainingError("bad_mix_entry", keys=", ".join(sorted(known)))
    source = DataSource(**value)
    for name in ("name", "format", "columns", "sheet"):
        if not isinstance(getattr(source, name), str):
            raise TrainingError("bad_mix_entry", keys=", ".join(sorted(known)))
    if not isinstance(source.limit, int) or isinstance(source.limit, bool) or not 0 <= source.limit <= MAX_LIMIT:
        raise TrainingError("setting_range", setting="limit", value=str(source.limit)[:40], low="0",
                            high=str(MAX_LIMIT))  # fmt: skip
    weight = source.weight
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 < weight <= MAX_WEIGHT:
        raise TrainingError("setting_range", setting="weight", value=str(weight)[:40], low="0 (excluded)",
                            high=f"{MAX_WEIGHT:g}")  # fmt: skip
    return source


def check_sources(values: list[Any]) -> list[DataSource]:
    if len(values) > MAX_SOURCES:
        raise TrainingError("too_many_datasets", count=len(values), max=MAX_SOURCES)
    return [source_from(v) for v in values]


def load_mix(sources: list[DataSource], seed: int, skip_invalid: bool = False,
             max_bytes: int | None = None) -> Mix:  # fmt: skip
    """Read, validate and combine the sources (see the module's docstring). A file with invalid rows is refused
    unless ``skip_invalid``, as for one dataset."""
    sources = check_sources(sources)
    if len(sources) == 1 and sources[0].limit == 0 and sources[0].weight == 1:
        report = _load(sources[0], max_bytes)
        report.usable(skip_invalid)
        return Mix(report, {}, [_part(sources[0], report, len(report.records), len(report.records))])
    offset, records, copies, parts, digest = 0, [], {}, [], hashlib.sha256()
    seen: dict[tuple[str, str, str], str] = {}
    for source in sources:
        report = _load(source, max_bytes)
        same = (report.sha256, report.columns, report.sheet)
        if same in seen:  # its copies would be split apart: a held-out row trained on as the other copy
            raise TrainingError("mix_twice", name=source.label, first=seen[same])
        seen[same] = source.label
        usable = report.usable(skip_invalid)
        chosen = usable[: source.limit] if source.limit else usable
        times = _times(len(chosen), source.weight, random.Random(f"{seed}:{report.sha256}"))
        used = 0
        for record, n in zip(chosen, times, strict=True):
            if n == 0:
                continue
            row = record.row + offset
            records.append(Record(row, record.messages))
            used += n
            if n > 1:
                copies[row] = n
        parts.append(_part(source, report, len(chosen), used))
        digest.update(f"{report.sha256}:{report.columns}:{report.sheet}:{source.limit}:{source.weight}\n".encode())
        offset += report.total_rows
    name = " + ".join(p["name"] for p in parts)
    # its rows: those used, repeats counted (the rows of the files are each part's rows_total)
    combined = DatasetReport("", name, digest.hexdigest(), "mix", sum(p["rows_used"] for p in parts), records)
    return Mix(combined, copies, parts)


def _load(source: DataSource, max_bytes: int | None) -> DatasetReport:
    report = load_records(source.path, source.format, max_bytes=max_bytes, columns=source.columns or None,
                          sheet=source.sheet)  # fmt: skip
    return replace(report, name=source.label)


def _times(n: int, weight: float, rng: random.Random) -> list[int]:
    """How many times each of ``n`` rows is used: ``floor(weight)`` each, and once more for a seeded
    ``frac(weight)`` share of them (so about ``n * weight`` in all)."""
    whole = math.floor(weight)
    extra = round(n * (weight - whole))
    lucky = set(rng.sample(range(n), extra)) if extra else set()
    return [whole + (1 if i in lucky else 0) for i in range(n)]


def _part(source: DataSource, report: DatasetReport, rows_chosen: int, rows_used: int) -> dict[str, Any]:
    return {"name": source.label, "sha256": report.sha256, "kind": report.kind, "format": report.format,
            "columns": report.columns, "columns_guessed": report.guessed, "sheet": report.sheet,
            "rows_total": report.total_rows, "rows_valid": report.valid_rows, "limit": source.limit,
            "weight": source.weight, "rows_chosen": rows_chosen, "rows_used": rows_used}  # fmt: skip


def repeat_rows(dataset: Any, copies: dict[int, int]) -> Any:
    """The training rows with each repeated row used its number of times."""
    if not copies:
        return dataset
    order = [i for i, row in enumerate(dataset["row"]) for _ in range(copies.get(row, 1))]
    return dataset.select(order)


def as_dicts(sources: list[DataSource]) -> list[dict[str, Any]]:
    return [asdict(s) for s in sources]
