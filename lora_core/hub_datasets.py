"""Datasets from the Hugging Face Hub: one split of one config of a dataset repository, fetched into the
workspace's stored uploads as one JSON Lines file.

The repository's file list (with sizes) is read first, at the asked revision, with ``huggingface_hub``'s own
client; the data files of the chosen config and split are picked from the ``configs:`` of its README's front
matter when it has them, else from the usual layout (``data/train-00000-of-00001.parquet``, ``test.jsonl``,
``<config>/validation/*.csv``...). What is too large or names no file is refused before anything is fetched.
The files are downloaded, at the commit the list was read from, into a hidden folder of ``Uploads/`` that is
removed whatever happens; their rows (Parquet, JSON / JSON Lines, CSV / TSV, read by ``tables.read_table``) are
concatenated in file order and stored like an upload, under their content's hash, with a record of where they
came from (repository, config, split, commit, files). Nothing is left in ``Uploads/`` when anything fails.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths, storage
from .errors import HubError
from .hub import _api, _endpoint, checked_repo_id, hub_failures
from .models import first_line
from .tables import read_table

logger = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".tsv")
NOT_DATA = ("dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json")  # metadata, not rows
# The words a file or folder name uses for a split (as the Hub's own viewer reads them).
SPLIT_WORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
README = "README.md"
README_MAX_BYTES = 1024 * 1024  # a card's front matter is small; a bigger one is not read (nor its YAML aliases)
DEFAULT_CONFIG = "default"
FILES_SHOWN = 8  # file names an error lists
PARTIAL_PREFIX = ".hub-"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FetchedDataset:
    path: Path  # the stored JSON Lines file in paths.uploads_dir()
    name: str  # how the user knows it: "owner/name", or "owner/name (config, split)" off the defaults
    repo_id: str
    config: str
    split: str
    commit: str  # the commit sha the files came from
    rows: int
    files: list[str]  # the repository files read


@contextlib.contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """``huggingface_hub``'s exceptions as the one sentence a user reads."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except HFValidationError as exc:  # an id checked_repo_id lets through but the client refuses ("a..b/c")
        raise HubError("hub_bad_repo", repo=paths.cut(repo_id)) from exc
    except GatedRepoError as exc:  # before its base class, RepositoryNotFoundError
        raise HubError("hub_gated", repo=repo_id) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise HubError("hub_dataset_not_found", repo=repo_id) from exc
    except hub_failures() as exc:
        raise HubError("hub_unreachable", repo=repo_id, detail=first_line(exc)) from exc


def fetch_dataset(repo_id: str, config: str = "", split: str = "train", revision: str | None = None,
                  token: str | None = None, progress: Progress | None = None,
                  max_bytes: int | None = None) -> FetchedDataset:  # fmt: skip
    """Fetch ``split`` of ``config`` (default: the repository's default config) of the dataset repository
    ``repo_id`` at ``revision`` (default: main) into the workspace's stored uploads (see the module's docstring).
    ``progress(done_bytes, total_bytes)`` is called at 0 and after each file; ``max_bytes`` (default: the upload
    cap) bounds the files fetched. The token is used for this fetch only."""
    repo_id = checked_repo_id(repo_id)
    config = (config or "").strip()
    split = (split or "").strip() or "train"
    revision = (revision or "").strip() or None
    max_bytes = storage.max_upload_bytes() if max_bytes is None else max_bytes
    with _hub_errors(repo_id):
        info = _api(token).dataset_info(repo_id, revision=revision, files_metadata=True)
    if info.gated and not token:
        raise HubError("hub_gated", repo=repo_id)
    commit = info.sha or revision or "main"
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or [] if _safe_name(s.rfilename)}
    folder = paths.uploads_dir()
    made_folder = not folder.exists()
    scratch: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        storage.keep_private(folder)
        scratch = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=folder))
        storage.keep_private(scratch)
        configs = _readme_configs(repo_id, commit, token, scratch) if README in sizes else []
        config, files = _choose_files(repo_id, sorted(sizes), configs, config, split)
        total = sum(sizes[name] for name in files)
        if total > max_bytes:
            raise HubError("hub_dataset_too_large", repo=repo_id, split=split, size=total, max_bytes=max_bytes)
        rows = _download_rows(repo_id, split, commit, token, files, sizes, scratch, max_bytes, progress)
        defaults = config == _default_config(configs) and split == "train"
        name = repo_id if defaults else f"{repo_id} ({config}, {split})"
        stored = _store(rows, name, {"hub": repo_id, "config": config, "split": split, "commit": commit,
                                     "files": files}, max_bytes)  # fmt: skip
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if made_folder:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: nothing was stored
    logger.info("fetched %s (%s, %s) at %s: %d rows", repo_id, config, split, commit[:12], len(rows))
    return FetchedDataset(stored, name, repo_id, config, split, commit, len(rows), files)


def _safe_name(name: str) -> bool:
    """A repository file name that stays inside the folder it is downloaded into."""
    parts = name.split("/")
    return bool(name) and "\\" not in name and "\x00" not in name and all(p not in ("", ".", "..") for p in parts)


def _download(repo_id: str, filename: str, commit: str, token: str | None, scratch: Path) -> Path:
    from huggingface_hub import hf_hub_download

    with _hub_errors(repo_id):
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=commit, token=token or False,
                                    endpoint=_endpoint(), local_dir=scratch))  # fmt: skip


def _download_rows(repo_id: str, split: str, commit: str, token: str | None, files: list[str], sizes: dict[str, int],
                   scratch: Path, max_bytes: int, progress: Progress | None) -> list[Any]:  # fmt: skip
    """Download ``files`` one by one and read their rows, in file order."""
    total = sum(sizes[name] for name in files)
    if progress is not None:
        progress(0, total)
    rows: list[Any] = []
    done = fetched = 0
    for filename in files:
        path = _download(repo_id, filename, commit, token, scratch)
        fetched += path.stat().st_size  # the sizes the list gave may be missing or wrong
        if fetched > max_bytes:
            raise HubError("hub_dataset_too_large", repo=repo_id, split=split, size=fetched, max_bytes=max_bytes)
        rows.extend(read_table(path, max_bytes).rows)
        done += sizes[filename]
        if progress is not None:
            progress(done, total)
    return rows


def _plain(value: Any) -> Any:
    """A value JSON can hold: NaN and infinities (pandas' empty cells) become null, other values text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _store(rows: list[Any], name: str, source: dict[str, Any], max_bytes: int) -> Path:
    """Store ``rows`` as a JSON Lines upload named by its content's hash, with its record; the path. What would be
    larger than an upload may be is refused before it is written."""
    data = "".join(json.dumps(_plain(row), ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    if len(data) > max_bytes:
        raise HubError("hub_dataset_too_large", repo=source["hub"], split=source["split"], size=len(data),
                       max_bytes=max_bytes)  # fmt: skip
    filename = f"{hashlib.sha256(data).hexdigest()[:20]}.jsonl"
    return storage.keep_upload(filename, len(data), lambda tmp: tmp.write_bytes(data), name=name, source=source)


# --- which files: a README's configs, or the usual layout --------------------------------------------------------


def _readme_configs(repo_id: str, commit: str, token: str | None, scratch: Path) -> list[dict]:
    """The ``configs:`` of the README's YAML front matter ([] when it has none or it cannot be read)."""
    import yaml

    path = _download(repo_id, README, commit, token, scratch)
    try:
        if path.stat().st_size > README_MAX_BYTES:
            raise ValueError(f"README.md is larger than {README_MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8-sig")
        path.unlink()
        lines = text.splitlines()
        if not lines or lines[0].strip() != "---":
            return []
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except (OSError, ValueError, StopIteration, yaml.YAMLError) as exc:
        logger.warning("the README of %s has no readable front matter: %s", repo_id, first_line(exc))
        return []
    configs = meta.get("configs") if isinstance(meta, dict) else None
    if not isinstance(configs, list):
        return []
    return [c for c in configs if isinstance(c, dict) and str(c.get("config_name") or "").strip()]


def _default_config(configs: list[dict]) -> str:
    if not configs:
        return DEFAULT_CONFIG
    chosen = next((c for c in configs if c.get("default") is True), configs[0])
    return str(chosen["config_name"]).strip()


def _is_data(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    hidden = any(part.startswith((".", "__")) for part in name.split("/"))
    return name.lower().endswith(DATA_SUFFIXES) and base.lower() not in NOT_DATA and not hidden


def _choose_files(repo_id: str, names: list[str], configs: list[dict], config: str,
                  split: str) -> tuple[str, list[str]]:  # fmt: skip
    """(the config's name, the data files of its split, in the order they are read)."""
    data = [name for name in names if _is_data(name)]
    if configs:
        known = [str(c["config_name"]).strip() for c in configs]
        if not config or (config == DEFAULT_CONFIG and config not in known):
            config = _default_config(configs)
        entry = next((c for c in configs if str(c["config_name"]).strip() == config), None)
        if entry is None:
            raise HubError("hub_dataset_no_config", repo=repo_id, config=paths.cut(config), configs=known)
        in_config, files = _config_files(entry, data, split)
    else:
        config = config or DEFAULT_CONFIG
        if config == DEFAULT_CONFIG:
            in_config, files = data, _split_files(data, "", split)
        else:
            prefix = config.strip("/") + "/"
            in_config = [name for name in data if name.startswith(prefix)]
            if not in_config:
                folders = sorted({name.split("/")[0] for name in data if "/" in name})
                raise HubError("hub_dataset_no_config", repo=repo_id, config=paths.cut(config),
                               configs=folders or ["none"])  # fmt: skip
            files = _split_files(in_config, prefix, split)
    if not files:
        shown = in_config[:FILES_SHOWN] + (["…"] if len(in_config) > FILES_SHOWN else [])
        raise HubError("hub_no_split", repo=repo_id, split=paths.cut(split, 40), config=config,
                       files=shown or ["none"])  # fmt: skip
    return config, files


def _config_files(entry: dict, data: list[str], split: str) -> tuple[list[str], list[str]]:
    """(all data files of a README config, those of ``split``): its ``data_files`` (a pattern, a list of patterns,
    a list of {split, path}, or {split: patterns}), relative to its ``data_dir`` when it has one."""
    data_dir = str(entry.get("data_dir") or "").strip("/")
    prefix = f"{data_dir}/" if data_dir else ""
    in_dir = [name for name in data if name.startswith(prefix)]
    data_files = entry.get("data_files")
    if data_files is None:  # no patterns: the usual layout, inside data_dir
        return in_dir, _split_files(in_dir, prefix, split)
    by_split: dict[str, list[str]] = {}
    if isinstance(data_files, str | list) and all(isinstance(item, str) for item in _as_list(data_files)):
        by_split["train"] = _as_list(data_files)
    elif isinstance(data_files, dict):
        by_split = {str(key): _as_list(value) for key, value in data_files.items()}
    else:
        for item in _as_list(data_files):
            if isinstance(item, dict) and "path" in item:
                by_split.setdefault(str(item.get("split") or "train"), []).extend(_as_list(item["path"]))
    everything = _matching(in_dir, prefix, [p for patterns in by_split.values() for p in patterns])
    return everything, _matching(in_dir, prefix, by_split.get(split, []))


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _matching(names: list[str], prefix: str, patterns: list[Any]) -> list[str]:
    """The names matching the patterns, in pattern order (each pattern's matches sorted), each once."""
    found: dict[str, None] = {}
    for pattern in patterns:
        pattern = prefix + str(pattern).removeprefix("./")
        found.update(dict.fromkeys(name for name in names if fnmatch.fnmatchcase(name, pattern)))
    return list(found)


def _names_split(relative: str, words: tuple[str, ...]) -> bool:
    """Whether a file's path (inside its config) names a split by one of ``words``: ``train-*.parquet``,
    ``train.jsonl``, ``data/train-*``, ``*-train-*``, ``*/train/*``."""
    parts = relative.lower().split("/")
    base = parts[-1]
    for word in words:
        if word in parts[:-1]:
            return True
        if fnmatch.fnmatchcase(base, f"{word}[-_.]*") or fnmatch.fnmatchcase(base, f"*[-_.]{word}[-_.]*"):
            return True
    return False


def _split_files(names: list[str], prefix: str, split: str) -> list[str]:
    """The usual layout: the files whose name says ``split``; all of them for train when none says any split."""
    words = SPLIT_WORDS.get(split.lower(), (split.lower(),))
    chosen = [name for name in names if _names_split(name[len(prefix) :], words)]
    if chosen or split.lower() != "train":
        return chosen
    every_word = tuple(w for ws in SPLIT_WORDS.values() for w in ws)
    return [] if any(_names_split(name[len(prefix) :], every_word) for name in names) else list(names)
