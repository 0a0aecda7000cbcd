"""Reading any dataset file a user holds into rows: JSON / JSON Lines, CSV / TSV, Parquet and Excel (.xlsx).

A row is a dict of column -> value (or, in a JSON file, whatever value the line holds: the row check names it).
Which reader: the file's first bytes for the binary kinds (Parquet starts with ``PAR1``, an .xlsx workbook is a
zip), its name for delimited text (``.csv``, ``.tsv``, ``.tab``, ``.txt``) unless it starts with '[' or '{', and JSON
otherwise (an array or JSON Lines, decided by the content as before). Every refusal is one ``DatasetError`` naming
the file and, where it can, the line, sheet or column. Nothing is written.

Parquet and Excel are read as a stream (row groups, a read-only workbook), and what they unpack to is bounded
(``UNPACKED_FACTOR`` times the upload cap), so a small compressed file cannot fill the memory.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .parsing import decode_text, parse_rows, read_bytes

KINDS = ("json", "csv", "parquet", "excel")
DELIMITED_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
DELIMITERS = "\t,;|"  # a tab first: a TSV's cells hold commas more often than a CSV's hold tabs
SNIFF_CHARS = 64 * 1024
SNIFF_RECORDS = 20
UNPACKED_FACTOR = 20  # a Parquet or Excel file may unpack to this many times the upload cap
UNPACKED_DEFAULT = 2 * 1024**3  # ... and to at most this without a cap
MAX_COLUMNS = 1000
MAX_SHEET_ROWS = 1_000_000
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary .xls (and .doc) container


@dataclass
class Table:
    """A file's rows, as read: its columns (in first-seen order), its sheets when it is a workbook."""

    name: str
    kind: str  # one of KINDS
    sha256: str
    rows: list[Any]
    columns: list[str] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)
    sheet: str = ""


def file_kind(path: Path, head: bytes) -> str:
    """Which reader a file needs (see the module's docstring)."""
    suffix = path.suffix.lower()
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(ZIP_MAGIC):
        return "excel"
    if head.startswith(OLE2_MAGIC):
        raise DatasetError("excel_old", file=path.name)
    if suffix in EXCEL_SUFFIXES:
        raise DatasetError("not_excel", file=path.name, detail="it is not a zip file")
    if suffix == ".parquet":
        raise DatasetError("parquet_unreadable", file=path.name, detail="it does not start with PAR1")
    return "csv" if suffix in DELIMITED_SUFFIXES and not looks_like_json(head) else "json"


def looks_like_json(head: bytes) -> bool:
    """Text that starts (after a BOM and blanks) with '[' or '{' is JSON, whatever the file's name."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"[", b"{")


def read_table(path: str | Path, max_bytes: int | None = None, sheet: str = "") -> Table:
    """Read ``path`` into rows (see the module's docstring); ``sheet``: an Excel sheet's name (default: the first)."""
    path = Path(path)
    data = read_bytes(path, max_bytes)
    kind = file_kind(path, data[:4096])
    sha256 = hashlib.sha256(data).hexdigest()
    if kind == "json":
        table = Table(path.name, kind, sha256, parse_rows(decode_text(data, path.name), path.name))
    elif kind == "csv":
        table = Table(path.name, kind, sha256, [])
        table.columns, table.rows = read_delimited(decode_text(data, path.name), path.name, path.suffix.lower())
    elif kind == "parquet":
        table = Table(path.name, kind, sha256, [])
        table.columns, table.rows = read_parquet(data, path.name, unpacked_limit(max_bytes))
    else:
        table = Table(path.name, kind, sha256, [])
        table.sheets, table.sheet, table.columns, table.rows = read_excel(data, path.name, sheet,
                                                                          unpacked_limit(max_bytes))  # fmt: skip
    if sheet and kind != "excel":
        raise DatasetError("sheet_not_excel", file=path.name, sheet=sheet[:40])
    if not table.columns:
        table.columns = list(dict.fromkeys(k for row in table.rows if isinstance(row, dict) for k in map(str, row)))
    if not table.rows:
        raise DatasetError("no_rows", file=path.name)
    return table


def unpacked_limit(max_bytes: int | None) -> int:
    return UNPACKED_FACTOR * max_bytes if max_bytes else UNPACKED_DEFAULT


# --- CSV / TSV ----------------------------------------------------------------------------------------------------


def read_delimited(text: str, name: str, suffix: str) -> tuple[list[str], list[dict[str, str]]]:
    """A header line and rows of text cells. The delimiter is found among , ; tab | (``sniff_delimiter``); cells
    may be quoted and hold new lines."""
    delimiter = sniff_delimiter(text, suffix)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    last_line = 0
    try:
        for cells in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if header is None:
                header = check_header(cells, name, first_line)
                continue
            if len(cells) != len(header):
                raise DatasetError("csv_ragged", file=name, line=first_line, found=len(cells), expected=len(header))
            rows.append(dict(zip(header, cells, strict=True)))
    except csv.Error as e:
        raise DatasetError("csv_invalid", file=name, line=reader.line_num, reason=str(e)) from None
    return header or [], rows


def sniff_delimiter(text: str, suffix: str) -> str:
    """The delimiter that splits the first records (quotes and quoted new lines understood, as the reader reads
    them) into the same number of cells, the most cells; a tab for a .tsv / .tab file when none does, else ','.

    Not ``csv.Sniffer``: its regular expressions take minutes on some crafted lines of a few hundred bytes
    (CPython gh-109638; over three minutes here), and an upload must not hold the server that long. This reads
    each candidate in one linear pass."""
    sample = text[:SNIFF_CHARS]
    best, best_cells = "\t" if suffix in (".tsv", ".tab") else ",", 1
    for delimiter in DELIMITERS:
        counts = []
        try:
            for cells in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter):
                if any(c.strip() for c in cells):
                    counts.append(len(cells))
                if len(counts) > SNIFF_RECORDS:
                    break
        except csv.Error:
            continue
        if len(sample) < len(text) and len(counts) > 1:
            counts = counts[:-1]  # the sample may cut its last record short
        if counts and len(set(counts)) == 1 and counts[0] > best_cells:
            best, best_cells = delimiter, counts[0]
    return best


def check_header(cells: list[Any], name: str, line: int) -> list[str]:
    """The column names: each cell's text, blank ones named ``column_<n>``; two columns of one name are refused."""
    header = [str(c).strip() if c is not None and str(c).strip() else f"column_{i}" for i, c in
              enumerate(cells, start=1)]  # fmt: skip
    if len(header) > MAX_COLUMNS:
        raise DatasetError("too_many_columns", file=name, count=len(header), max=MAX_COLUMNS)
    seen: dict[str, int] = {}
    for i, column in enumerate(header, start=1):
        if column in seen:
            raise DatasetError("duplicate_column", file=name, column=column[:60], first=seen[column], second=i,
                               line=line)  # fmt: skip
        seen[column] = i
    return header


# --- Parquet ------------------------------------------------------------------------------------------------------


def read_parquet(data: bytes, name: str, limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows of a Parquet file, one row group at a time; nested columns (a list of role / content structs) come as
    lists of dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(pa.BufferReader(data))
        unpacked = sum(reader.metadata.row_group(i).total_byte_size for i in range(reader.metadata.num_row_groups))
        if unpacked > limit:
            raise DatasetError("unpacks_too_large", file=name, size=unpacked, max_bytes=limit)
        columns = list(reader.schema_arrow.names)
        rows: list[dict[str, Any]] = []
        for batch in reader.iter_batches(batch_size=1024):
            unpacked += batch.nbytes  # repeated values are stored once in the file, and unpacked each time here
            if unpacked > limit:
                raise DatasetError("unpacks_too_large", file=name, size=unpacked, max_bytes=limit)
            rows.extend(batch.to_pylist())
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DatasetError("parquet_unreadable", file=name, detail=short(e)) from None
    return columns, rows


# --- Excel --------------------------------------------------------------------------------------------------------


def read_excel(data: bytes, name: str, sheet: str, limit: int) -> tuple[list[str], str, list[str], list[dict]]:
    """The sheets of a workbook, the one read (``sheet``, else the first), its header row (the first non-blank
    one) and its rows. Numbers and dates become text, as the spreadsheet shows them."""
    import openpyxl

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DatasetError("not_excel", file=name, detail=short(e)) from None
    if "xl/workbook.xml" not in entries:
        found = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise DatasetError("not_excel", file=name, detail=f"a zip of {found or 'nothing'}")
    if unpacked > limit:
        raise DatasetError("unpacks_too_large", file=name, size=unpacked, max_bytes=limit)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - broken XML, missing parts, odd sheets: openpyxl raises many kinds
        raise DatasetError("not_excel", file=name, detail=short(e)) from None
    try:
        sheets = [ws.title for ws in book.worksheets]  # chart sheets hold no rows
        if sheet and sheet not in sheets:
            raise DatasetError("excel_no_sheet", file=name, sheet=sheet[:40], sheets=sheets[:20] or ["none"])
        # the chosen sheet; else the first that has rows (a cover sheet or an empty one comes first in many books)
        for chosen in [sheet] if sheet else sheets:
            header, rows = _sheet_rows(book[chosen], name, chosen)
            if rows:
                break
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds (broken XML, odd cells): all say "not a workbook"
        raise DatasetError("not_excel", file=name, detail=short(e)) from None
    finally:
        book.close()
    if not sheets:
        raise DatasetError("not_excel", file=name, detail="it has no worksheet")
    return sheets, chosen, header, rows


def _sheet_rows(ws: Any, name: str, title: str) -> tuple[list[str], list[dict[str, str | None]]]:
    """A sheet's header (its first non-blank row) and rows, read from its cells as stored (the size a sheet
    declares is not trusted), at most ``MAX_SHEET_ROWS`` rows."""
    ws.reset_dimensions()
    header: list[str] | None = None
    rows: list[dict[str, str | None]] = []
    for line, values in enumerate(ws.iter_rows(values_only=True), start=1):
        cells = [cell_text(v) for v in values]
        if not any(c and c.strip() for c in cells):
            continue
        if header is None:
            header = check_header(cells, name, line)
            continue
        if len(rows) >= MAX_SHEET_ROWS:
            raise DatasetError("excel_too_many_rows", file=name, sheet=title[:40], max=MAX_SHEET_ROWS)
        if any(c and c.strip() for c in cells[len(header) :]):
            raise DatasetError("excel_ragged", file=name, sheet=title[:40], line=line, expected=len(header))
        cells = (cells + [None] * len(header))[: len(header)]
        rows.append(dict(zip(header, cells, strict=True)))
    return header or [], rows


def cell_text(value: Any) -> str | None:
    """A cell as the sheet shows it: 42 not 42.0, a date as ISO text; empty stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split(". ")[0].rstrip(".")  # its first sentence: the refusal is one
    return text if len(text) <= 200 else text[:197] + "..."
