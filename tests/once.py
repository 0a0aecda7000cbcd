"""Work done once per test run although the run is split over processes (pytest-xdist): a file lock, and a
folder made by the first process to ask for it while the others wait."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... in a process of a parallel run; None otherwise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a file), held by one test process at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def once_per_run(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict]) -> tuple[Path, dict]:
    """``make(folder)`` run once per test run, also when the run is split over processes: the first process to
    get here makes ``folder`` (and ``make``'s JSON-able result) while the others wait, then read it."""
    root = factory.getbasetemp()
    if WORKER:  # the processes of one run share their base folder's parent
        root = root.parent
    folder, record = root / f"shared-{name}", root / f"shared-{name}.json"
    with locked(root / f"shared-{name}.lock"):
        if not record.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            record.write_text(json.dumps(make(folder)), encoding="utf-8")
    return folder, json.loads(record.read_text(encoding="utf-8"))
