"""Base models from the Hugging Face Hub, only through an explicit download a user starts.

Before anything is fetched the repository's file list is read: a repository with no safetensors weights (pickle is
never fetched), a model that needs its own code (unless the user allows it), a gated repository without a token,
or a download that would not fit on the disk is refused in one sentence. Only weights (safetensors), configs,
tokenizer files and chat templates are fetched, with ``huggingface_hub``'s own client, into a hidden folder that an
interrupted download resumes from; the finished folder is checked, records its repository and commit, and is
renamed into ``Models/LLM/<name>/``. A token is used for that download only: never stored, logged or shown.
The Hub's address is ``HF_ENDPOINT`` when set (the tests run a server of their own on 127.0.0.1).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import HubError, ModelError
from .files import usual_permissions, write_json
from .models import SOURCE_FILE, first_line

logger = logging.getLogger(__name__)

# What a base model folder needs, and nothing that can run code when loaded.
WANTED = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
          "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
          "vocab.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")  # fmt: skip
PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
DISK_MARGIN = 1.1  # room beyond the files themselves
PARTIAL_PREFIX = ".download-"


@dataclass(frozen=True)
class Plan:
    repo_id: str
    commit: str
    files: dict[str, int]  # what will be fetched: name -> size in bytes
    total_bytes: int
    gated: bool


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(), token=token or False)


def checked_repo_id(repo_id: str) -> str:
    """``owner/name``, stripped; anything else (empty, no or two slashes, spaces, over 200 characters) refused."""
    repo_id = (repo_id or "").strip()
    if not repo_id or len(repo_id) > 200 or repo_id.count("/") != 1 or any(c in repo_id for c in " \\\x00"):
        raise HubError("hub_bad_repo", repo=paths.cut(repo_id))
    return repo_id


def hub_failures() -> tuple[type[BaseException], ...]:
    """What ``huggingface_hub`` raises when the Hub cannot be reached or answers with an error (its HTTP client's
    connection errors are not OSErrors)."""
    import contextlib
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    failures: list[type[BaseException]] = [HfHubHTTPError, OSError, ValueError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError, AttributeError):
            failures.append(importlib.import_module(module).HTTPError)
    return tuple(failures)


def plan_download(repo_id: str, revision: str | None = None, token: str | None = None,
                  trust_remote_code: bool = False) -> Plan:  # fmt: skip
    """What a download of ``repo_id`` would fetch, or the sentence that refuses it (nothing is fetched)."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    repo_id = checked_repo_id(repo_id)
    try:
        info = _api(token).model_info(repo_id, revision=revision, files_metadata=True)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise HubError("hub_not_found", repo=repo_id) from exc
    except hub_failures() as exc:
        raise HubError("hub_unreachable", repo=repo_id, detail=first_line(exc)) from exc
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    wanted = {name: size for name, size in sizes.items() if "/" not in name and _matches(name, WANTED)}
    if not any(name.endswith(".safetensors") for name in wanted):
        pickles = sorted(n for n in sizes if _matches(n, PICKLES))
        raise HubError("hub_no_safetensors", repo=repo_id, files=pickles[:3] or ["none"])
    gated = bool(info.gated)
    if gated and not token:
        raise HubError("hub_gated", repo=repo_id)
    plan = Plan(repo_id, info.sha or "", wanted, sum(wanted.values()), gated)
    _check_config(plan, revision, token, trust_remote_code)
    return plan


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _check_config(plan: Plan, revision: str | None, token: str | None, trust_remote_code: bool) -> None:
    """Fetch config.json first (small) and refuse a model that needs code of its own."""
    from huggingface_hub import hf_hub_download
    from transformers import CONFIG_MAPPING

    if "config.json" not in plan.files:
        raise HubError("hub_no_config", repo=plan.repo_id)
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="simple-lora-config-") as scratch:
        try:
            path = hf_hub_download(plan.repo_id, "config.json", revision=revision, token=token or False,
                                   endpoint=_endpoint(), cache_dir=scratch)  # fmt: skip
        except GatedRepoError as exc:
            raise HubError("hub_gated", repo=plan.repo_id) from exc
        except (HfHubHTTPError, OSError) as exc:
            raise HubError("hub_unreachable", repo=plan.repo_id, detail=first_line(exc)) from exc
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HubError("hub_no_config", repo=plan.repo_id) from exc
    if config.get("model_type") not in CONFIG_MAPPING and not trust_remote_code:
        raise ModelError("remote_code_required", folder=plan.repo_id, model_type=str(config.get("model_type")))


Progress = Callable[[int, int], None]


def download_model(repo_id: str, revision: str | None = None, name: str | None = None, token: str | None = None,
                   trust_remote_code: bool = False, progress: Progress | None = None) -> Path:  # fmt: skip
    """Download ``repo_id`` into ``Models/LLM/<name>/`` (default: the repository's name) after ``plan_download``'s
    checks and a free-disk check; an interrupted download resumes. ``progress(done_bytes, total_bytes)`` is called
    after each file. Returns the model folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    plan = plan_download(repo_id, revision, token, trust_remote_code)
    root = paths.own_llm_dir()
    dest = paths.inside(root, paths.safe_name(name or repo_id.split("/")[-1]))
    if dest.exists():
        raise ModelError("model_exists", name=dest.name)
    partial = root / f"{PARTIAL_PREFIX}{dest.name}"  # kept when a download breaks off: the next one resumes it
    partial.mkdir(parents=True, exist_ok=True)
    have = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
    free = shutil.disk_usage(partial).free
    if (plan.total_bytes - have) * DISK_MARGIN > free:
        raise HubError("hub_no_space", repo=repo_id, needed=plan.total_bytes, free=free)
    done = 0
    for filename, size in sorted(plan.files.items(), key=lambda item: item[1]):
        try:
            hf_hub_download(repo_id, filename, revision=plan.commit or revision, token=token or False,
                            endpoint=_endpoint(), local_dir=partial)  # fmt: skip
        except GatedRepoError as exc:
            raise HubError("hub_gated", repo=repo_id) from exc
        except (HfHubHTTPError, OSError) as exc:  # broken off: what is there stays, for the next try to resume
            raise HubError("hub_interrupted", repo=repo_id, file=filename, detail=first_line(exc)) from exc
        done += size
        if progress is not None:
            progress(done, plan.total_bytes)
    return _finish(plan, partial, dest)


def _finish(plan: Plan, partial: Path, dest: Path) -> Path:
    from .models import check_model_dir, check_remote_code, check_weights, load_tokenizer

    shutil.rmtree(partial / ".cache", ignore_errors=True)  # huggingface_hub's own bookkeeping for the download
    write_json(partial / SOURCE_FILE, {"repo_id": plan.repo_id, "commit": plan.commit})
    folder = check_model_dir(partial)
    check_remote_code(folder, trust_remote_code=True)  # the config reads
    check_weights(folder)
    load_tokenizer(folder)
    usual_permissions(partial)
    os.replace(partial, dest)
    logger.info("downloaded %s (%s) into %s", plan.repo_id, plan.commit[:12], dest)
    return dest


# --- adapters out: push to the Hub with a model card ------------------------------------------------------------

CARD_FILE = "README.md"
CURVE_FILE = "loss_curve.png"
EVAL_IMAGE = "eval_card.png"


def model_card(adapter: Path, repo_id: str) -> str:
    """The README of a pushed adapter: what it was trained on and how, its losses, and how to load it."""
    from .adapters import has_manifest, read_adapter_config, read_manifest
    from .evaluation import read_evaluation
    from .report import card_markdown

    config = read_adapter_config(adapter)
    base = config.get("base_model_name_or_path") or "the base model it was trained on"
    targets = ", ".join(sorted(config.get("target_modules") or []))
    lines = ["---", f"base_model: {base}", "library_name: peft", "tags:", "- lora", "- simple-lora", "---", "",
             f"# {adapter.name}", "", f"A LoRA adapter (rank {config.get('r')}, on {targets}) for **{base}**, "
             "trained with Simple LoRA.", ""]  # fmt: skip
    if has_manifest(adapter):
        m = read_manifest(adapter)
        d = m.dataset
        before = f"{m.eval_loss_before:.4f}" if m.eval_loss_before is not None else "n/a"
        after = f"{m.eval_loss_after:.4f}" if m.eval_loss_after is not None else "n/a"
        lines += ["## Training", "", "| | |", "|---|---|", f"| method | {_cell(m.method)} |",
                  f"| dataset | {_cell(d.name)} (sha256 `{d.sha256}`) |",
                  *([f"| columns | {_cell(d.columns)} |"] if d.columns else []),
                  *[f"| part {i} | {_cell(p.get('name'))} (sha256 `{p.get('sha256')}`): {p.get('rows_used')} rows "
                    f"used{', columns ' + _cell(p['columns']) if p.get('columns') else ''} |"
                    for i, p in enumerate(d.parts, start=1) if len(d.parts) > 1],
                  f"| rows | {d.rows_total} in the file, {d.rows_invalid_skipped} invalid skipped, "
                  f"{d.train_examples} trained, {d.eval_examples} held out |",
                  f"| steps | {m.steps} ({m.status}) |", f"| final training loss | {m.final_train_loss} |",
                  f"| eval loss: base before, adapter after | {before}, {after} |", "",
                  "| setting | value |", "|---|---|", *[f"| {k} | {_cell(v)} |" for k, v in m.hyperparameters.items()],
                  "", f"![loss curve]({CURVE_FILE})", ""]  # fmt: skip
    evaluation = read_evaluation(adapter)
    if evaluation is not None:
        lines += [card_markdown(evaluation, EVAL_IMAGE)]
    lines += ["## How to load it", "", "With PEFT:", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'base = AutoModelForCausalLM.from_pretrained("{base}")',
              f'model = PeftModel.from_pretrained(base, "{repo_id}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```", "",
              "With Simple LoRA: download this repository's files into `Models/LoRA/<name>/` (or upload them as a",
              ".zip in the Models tab), put its base model in `Models/LLM/`, and activate it.", ""]  # fmt: skip
    return "\n".join(lines)


def _cell(value: object) -> str:
    """A value (a file name, a column mapping: anyone's text) as the text of one Markdown table cell."""
    text = " ".join(str(value).splitlines())
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~])", r"\\\1", text)


def push_adapter(adapter: str | Path, repo_id: str, token: str, private: bool = True) -> str:
    """Push exactly the adapter's files, with a model card (and its loss curve), to the Hub repository
    ``repo_id`` (created, private by default, when it is not there). The token is used for this push only.
    Returns the commit's URL."""
    from .adapters import has_manifest, read_manifest, verify_adapter
    from .evaluation import read_evaluation
    from .report import card_png, loss_curve_png

    adapter = Path(adapter)
    verify_adapter(adapter)
    repo_id = checked_repo_id(repo_id)
    extra = {CARD_FILE: model_card(adapter, repo_id).encode("utf-8")}
    manifest = read_manifest(adapter) if has_manifest(adapter) else None
    if manifest is not None and manifest.loss_history:
        extra[CURVE_FILE] = loss_curve_png(manifest)
    evaluation = read_evaluation(adapter)
    if evaluation is not None:
        extra[EVAL_IMAGE] = card_png(manifest, evaluation)
    return _push(adapter, extra, repo_id, token, private, f"Upload adapter {adapter.name}")


def merged_card(folder: Path, repo_id: str) -> str:
    """The README of a pushed merged model: which adapter went into which base, and how to load it."""
    from .storage import MERGED_MARK

    mark = json.loads((folder / MERGED_MARK).read_text(encoding="utf-8"))
    base = str(mark.get("base_repo_id") or mark.get("base") or "its base model")
    return "\n".join(["---", f"base_model: {base}", "library_name: transformers", "tags:", "- merged-lora",
                      "- simple-lora", "---", "", f"# {folder.name}", "",
                      f"The LoRA adapter {mark.get('adapter')} merged into **{base}** with Simple LoRA: a standalone "
                      "model, no PEFT needed.", "", "```python",
                      "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                      f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                      f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```", ""])  # fmt: skip


def push_merged(name: str, repo_id: str, token: str, private: bool = True) -> str:
    """Push the current workspace's merged model ``name`` (when it fits the page's cap) with a model card."""
    from .bundles import check_merged_leaves

    folder = check_merged_leaves(name)
    repo_id = checked_repo_id(repo_id)
    card = merged_card(folder, repo_id).encode("utf-8")
    return _push(folder, {CARD_FILE: card}, repo_id, token, private, f"Upload merged model {folder.name}")


def _push(folder: Path, extra: dict[str, bytes], repo_id: str, token: str, private: bool, message: str) -> str:
    """One commit to ``repo_id`` (created, private by default, when missing) of the plain files of ``folder``
    and ``extra`` (name: bytes, which wins over a file of the same name); the token is used for this push only."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    if not token:
        raise HubError("hub_push_token", repo=repo_id)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and p.name not in extra)
    operations = [CommitOperationAdd(p.name, str(p)) for p in files]
    operations += [CommitOperationAdd(name, data) for name, data in extra.items()]
    api = _api(token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations, commit_message=message)
    except HfHubHTTPError as exc:
        raise HubError("hub_push_failed", repo=repo_id, detail=first_line(exc)) from exc
    logger.info("pushed %s to %s", folder.name, repo_id)
    return info.commit_url
