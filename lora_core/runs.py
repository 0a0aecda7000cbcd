"""The one training of this process (its lock), and the run records: ``Runs/<run>/run.json`` holds a training's
state, settings and history; its checkpoints sit beside it.

Reading (``list_runs``, ``latest_checkpoint``) never changes anything on disk: a run still marked active whose
process is gone is *shown* as interrupted, an unreadable record is *shown* as rebuilt from its folders.
``reconcile_runs`` is the one step that writes those repairs (records them as interrupted, keeps an unreadable
record aside and rebuilds it, removes a staging folder whose save died); the app calls it at start-up and before
every training.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import adapters, paths
from .errors import AdapterError, TrainingError
from .files import write_json

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
CORRUPT_SUFFIX = ".corrupt"


class State(StrEnum):
    QUEUED = "queued"
    LOADING = "loading"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE_STATES = (State.QUEUED, State.LOADING, State.RUNNING, State.STOPPING)
FINAL_STATES = (State.COMPLETED, State.STOPPED, State.FAILED, State.INTERRUPTED)


# --- the process-wide lock: one training at a time ---------------------------------------------------------

_LOCK = threading.Lock()
_ACTIVE: Any = None  # the TrainingJob holding the lock


def active_job() -> Any:
    """The training running in this process (a ``training.TrainingJob``), if any."""
    return _ACTIVE


def claim(job: Any) -> None:
    """Take the lock for ``job``; ``TrainingError("busy")`` naming the running task when another holds it."""
    global _ACTIVE
    if not _LOCK.acquire(blocking=False):
        running = _ACTIVE
        if running is not None and getattr(running, "user", None) != getattr(job, "user", None):
            raise TrainingError("busy_other")  # another user's: not named
        raise TrainingError("busy", task=running.config.task if running else "?")
    _ACTIVE = job


def release(job: Any) -> None:
    global _ACTIVE
    if _ACTIVE is job:
        _ACTIVE = None
        _LOCK.release()


# --- run records -----------------------------------------------------------------------------------------


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def write_run(run_dir: Path, record: dict) -> None:
    write_json(run_dir / RUN_FILE, record, indent=1)


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(run_json: Path) -> dict | None:
    """A run record, or None when it cannot be read."""
    try:
        record = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        return None
    return record if isinstance(record, dict) else None


def _is_dead(record: dict) -> bool:
    """Marked active, but no process is running it."""
    if record.get("state") not in ACTIVE_STATES:
        return False
    if record.get("pid") == os.getpid():  # this process: alive only while it trains that very run
        return getattr(_ACTIVE, "run_id", None) != record.get("run")
    return not _pid_alive(record.get("pid"))


def _started_from_name(run: str) -> str | None:
    stamp = re.search(r"_(\d{8})_(\d{6})", run)
    try:
        return datetime.strptime("".join(stamp.groups()), "%Y%m%d%H%M%S").isoformat(timespec="seconds")
    except (AttributeError, ValueError):  # no stamp, or not a date
        return None


def _rebuilt(run_dir: Path) -> dict:
    """A record rebuilt from what the folders say (its adapter's manifest, its checkpoints)."""
    run = run_dir.name
    record: dict[str, Any] = {"run": run, "task": re.sub(r"_\d{8}_\d{6}(_\d+)?$", "", run), "rebuilt": True}
    adapter = paths.lora_dir() / run
    try:
        manifest = adapters.read_manifest(adapter) if adapters.has_manifest(adapter) else None
    except AdapterError:
        manifest = None
    if manifest is not None:
        record.update(
            state=manifest.status or State.COMPLETED,
            adapter_dir=str(adapter),
            started_at=manifest.started_at,
            finished_at=manifest.finished_at,
            task=manifest.task or record["task"],
        )
    elif any((run_dir / "checkpoints").glob("checkpoint-*")):
        record.update(state=State.INTERRUPTED, error="its run record was unreadable; its checkpoints are kept")
    else:
        record.update(state=State.FAILED, error="its run record was unreadable")
    record["started_at"] = record.get("started_at") or _started_from_name(run)
    return record


def list_runs(root: Path | None = None) -> list[dict]:
    """Every recorded run, newest first, as it stands: a dead active run shown as interrupted, an unreadable
    record shown as rebuilt from its folders. Nothing is written."""
    root = root or paths.runs_dir()
    runs = []
    for run_json in sorted(root.glob(f"*/{RUN_FILE}")) if root.is_dir() else []:
        record = _read(run_json)
        if record is None:
            record = _rebuilt(run_json.parent)
        elif _is_dead(record):
            record = {**record, "state": State.INTERRUPTED, "finished_at": record.get("finished_at") or now()}
        runs.append(record)
    return sorted(runs, key=lambda r: r.get("started_at") or "", reverse=True)


def reconcile_runs(root: Path | None = None) -> int:
    """Write down what ``list_runs`` only shows: dead active runs become interrupted (and the staging folder of a
    save they did not finish is removed), unreadable records are kept aside as ``run.json.corrupt`` and rebuilt.
    Returns how many records were repaired."""
    root = root or paths.runs_dir()
    repaired = 0
    for run_json in sorted(root.glob(f"*/{RUN_FILE}")) if root.is_dir() else []:
        record = _read(run_json)
        try:
            if record is None:
                os.replace(run_json, run_json.with_name(RUN_FILE + CORRUPT_SUFFIX))
                write_run(run_json.parent, _rebuilt(run_json.parent))
            elif _is_dead(record):
                record.update(state=State.INTERRUPTED, finished_at=record.get("finished_at") or now())
                write_run(run_json.parent, record)
                # a save its process did not finish: the hidden staging folder is of no use to anyone now
                shutil.rmtree(paths.lora_dir() / f"{adapters.STAGING_PREFIX}{record.get('run')}", ignore_errors=True)
            else:
                continue
        except OSError as exc:  # the history is a convenience: a read-only folder must not stop anything
            logger.warning("could not repair %s: %s", run_json, exc)
            continue
        repaired += 1
    return repaired


def latest_checkpoint(task: str) -> Path | None:
    """The newest checkpoint of an unfinished run of ``task`` (for --resume)."""
    name = paths.safe_name(task)
    for record in list_runs():
        if record.get("task") == name and record.get("state") in (State.STOPPED, State.FAILED, State.INTERRUPTED):
            ckpts = sorted(
                (paths.runs_dir() / record["run"] / "checkpoints").glob("checkpoint-*"),
                key=lambda p: int(p.name.split("-")[-1]),
            )
            if ckpts:
                return ckpts[-1]
    return None


_USED_RUN_IDS: set[str] = set()
_RUN_IDS_LOCK = threading.Lock()


def unique_run_id(task: str) -> str:
    """``<task>_<timestamp>``, with ``_2``, ``_3``... when that run or adapter exists (two starts in one second)."""
    base = adapters.run_name(task)
    run_id, n = base, 1
    with _RUN_IDS_LOCK:
        while run_id in _USED_RUN_IDS or (paths.runs_dir() / run_id).exists() or (paths.lora_dir() / run_id).exists():
            n += 1
            run_id = f"{base}_{n}"
        _USED_RUN_IDS.add(run_id)
    return run_id
