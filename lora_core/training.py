"""Training: ``TrainConfig`` and ``TrainingJob`` (a background thread running transformers' ``Trainer``).

One training at a time per process (a process-wide lock). States:
queued -> loading -> running -> stopping -> completed | stopped | failed; a run left "running" by a process that
died is shown as "interrupted". The UI polls ``job.snapshot()``, so closing the browser never stalls training.
Each run has a folder ``Runs/<run>/`` with ``run.json`` (its state and history) and its checkpoints; the adapter
itself goes to ``Models/LoRA/<run>/`` (see adapters.py).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import random
import re
import shutil
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from . import __version__, adapters, paths
from .config import TrainConfig, TrainingError, uses_checkpointing
from .errors import SimpleLoraError

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"


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


# --- the process-wide lock ---------------------------------------------------------------------------------

_LOCK = threading.Lock()
_ACTIVE: TrainingJob | None = None


def active_job() -> TrainingJob | None:
    return _ACTIVE


def _acquire(job: TrainingJob) -> None:
    global _ACTIVE
    if not _LOCK.acquire(blocking=False):
        busy = _ACTIVE.config.task if _ACTIVE else "?"
        raise TrainingError(f"A training is already running: {busy}.", code="busy", task=busy)
    _ACTIVE = job


def _release(job: TrainingJob) -> None:
    global _ACTIVE
    if _ACTIVE is job:
        _ACTIVE = None
        _LOCK.release()


# --- device and model loading ------------------------------------------------------------------------------


def device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def effective_quantization(requested: str, device: str) -> str:
    """The quantization a run will use. On CPU only ``none`` exists: bitsandbytes' k-bit training needs CUDA."""
    if device != "cuda":
        if requested in ("4bit", "8bit"):
            raise TrainingError(
                f"{requested} quantization needs a CUDA GPU; on this CPU the model trains in float32.",
                code="quantization_needs_cuda",
                quantization=requested,
            )
        return "none"
    return "4bit" if requested == "auto" else requested


def load_base_model(base: Path, quantization: str, device: str, trust_remote_code: bool = False) -> Any:
    """The base model for training: float32 on CPU; on CUDA 4-bit NF4 / 8-bit (bitsandbytes) or bf16."""
    import torch
    from transformers import AutoModelForCausalLM

    from .loading import check_remote_code, check_weights, first_line

    check_remote_code(base, trust_remote_code)  # before transformers imports anything from the folder
    check_weights(base)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "trust_remote_code": trust_remote_code,
        "use_safetensors": True,
    }
    if device == "cuda":
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
        kwargs["dtype"] = compute
        if quantization in ("4bit", "8bit"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (
                BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_compute_dtype=compute,
                    bnb_4bit_use_double_quant=True,
                )
                if quantization == "4bit"
                else BitsAndBytesConfig(load_in_8bit=True)
            )
    else:
        kwargs["dtype"] = torch.float32
    try:
        return AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(
            f"The base model in {base} cannot be loaded: {first_line(exc)}", code="model_load_failed", path=str(base)
        ) from exc


# --- run records (Runs/<run>/run.json) ---------------------------------------------------------------------


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _write_run(run_dir: Path, record: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, run_dir / RUN_FILE)


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


def _rebuild_run(run_json: Path) -> dict:
    """A run record that cannot be read: kept aside as ``run.json.corrupt``, and rebuilt from what the folders
    say (its adapter's manifest, its checkpoints), so that the history and --resume go on working."""
    run_dir = run_json.parent
    try:
        os.replace(run_json, run_dir / f"{RUN_FILE}.corrupt")
    except OSError as exc:
        logger.warning("could not keep the unreadable %s aside: %s", run_json, exc)
    run = run_dir.name
    task = re.sub(r"_\d{8}_\d{6}(_\d+)?$", "", run)
    record: dict[str, Any] = {"run": run, "task": task, "rebuilt": True}
    adapter = paths.lora_dir() / run
    try:
        meta = adapters.read_meta(adapter) if adapter.is_dir() else None
    except adapters.AdapterError:
        meta = None
    if meta is not None:
        record.update(
            state=meta.get("status", State.COMPLETED), adapter_dir=str(adapter), started_at=meta.get("started_at"),
            finished_at=meta.get("finished_at"), task=meta.get("task", task),
        )  # fmt: skip
    elif any((run_dir / "checkpoints").glob("checkpoint-*")):
        record.update(state=State.INTERRUPTED, error="its run record was unreadable; its checkpoints are kept")
    else:
        record.update(state=State.FAILED, error="its run record was unreadable")
    record.setdefault("started_at", None)
    if not record["started_at"]:
        stamp = re.search(r"_(\d{8})_(\d{6})", run)
        record["started_at"] = (
            datetime.strptime("".join(stamp.groups()), "%Y%m%d%H%M%S").isoformat(timespec="seconds") if stamp else None
        )
    try:
        _write_run(run_dir, record)
    except OSError as exc:
        logger.warning("could not rebuild %s: %s", run_json, exc)
    return record


def list_runs(root: Path | None = None) -> list[dict]:
    """Every recorded run, newest first. A run still marked active whose process is gone is ``interrupted``
    (and recorded so); an unreadable record is listed as failed with the reason, never dropped silently."""
    root = root or paths.runs_dir()
    runs = []
    for run_json in sorted(root.glob(f"*/{RUN_FILE}")) if root.is_dir() else []:
        try:
            record = json.loads(run_json.read_text(encoding="utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
            record = _rebuild_run(run_json)
        mine = record.get("pid") == os.getpid() and _ACTIVE is not None and _ACTIVE.run_id == record.get("run")
        if record.get("state") in ACTIVE_STATES and not mine and not _pid_alive(record.get("pid")):
            record["state"] = State.INTERRUPTED
            record.setdefault("finished_at", _now())
            _write_run(run_json.parent, record)
            # a save its process did not finish: the hidden staging folder is of no use to anyone now
            shutil.rmtree(paths.lora_dir() / f"{adapters.STAGING_PREFIX}{record.get('run')}", ignore_errors=True)
        runs.append(record)
    return sorted(runs, key=lambda r: r.get("started_at") or "", reverse=True)


def latest_checkpoint(task: str) -> Path | None:
    """The newest checkpoint of an unfinished run of ``task`` (for --resume)."""
    name = paths.safe_name(task)
    candidates = []
    for record in list_runs():
        if record.get("task") == name and record.get("state") in (State.STOPPED, State.FAILED, State.INTERRUPTED):
            ckpts = sorted(
                (paths.runs_dir() / record["run"] / "checkpoints").glob("checkpoint-*"),
                key=lambda p: int(p.name.split("-")[-1]),
            )
            if ckpts:
                candidates.append(ckpts[-1])
    return candidates[0] if candidates else None


_USED_RUN_IDS: set[str] = set()
_RUN_IDS_LOCK = threading.Lock()


def _unique_run_id(task: str) -> str:
    """``<task>_<timestamp>``, with ``_2``, ``_3``... when that run or adapter exists (two starts in one second)."""
    base = adapters.run_name(task)
    run_id, n = base, 1
    with _RUN_IDS_LOCK:
        while run_id in _USED_RUN_IDS or (paths.runs_dir() / run_id).exists() or (paths.lora_dir() / run_id).exists():
            n += 1
            run_id = f"{base}_{n}"
        _USED_RUN_IDS.add(run_id)
    return run_id


# --- the job -----------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the UI polls. Mutated only by the training thread under the job's lock; read via snapshot()."""

    state: State = State.QUEUED
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: list[list[float]] = field(default_factory=list)  # [step, loss]
    eval_loss: list[list[float]] = field(default_factory=list)  # [step, eval loss]
    learning_rate: float = 0.0
    tokens_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    adapter_dir: str | None = None
    error: str | None = None
    error_code: str | None = None
    error_params: dict = field(default_factory=dict)  # the error's params, for a translated message
    detail: dict = field(default_factory=dict)  # dataset counts, trainable params, targets, device


class TrainingJob:
    """One training run. ``start()`` runs it on a background thread; ``run()`` runs it in the caller's thread."""

    def __init__(self, config: TrainConfig) -> None:
        config.check()
        self.config = config
        self.run_id = _unique_run_id(config.task)
        self.progress = Progress()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._save_on_stop = True
        self._thread: threading.Thread | None = None
        self._tokens = 0
        self._computed_tokens = 0
        self._checkpointing = bool(config.gradient_checkpointing)  # resolved for the device in _train
        self.started_at = _now()
        self.finished_at: str | None = None
        self.is_main_process = int(os.environ.get("RANK", "0")) == 0
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun / accelerate launch: one run name for all ranks
            import torch
            from accelerate import PartialState
            from accelerate.utils import broadcast_object_list

            PartialState(cpu=not torch.cuda.is_available())  # without cpu=True it sees one process on a CPU
            self.run_id = broadcast_object_list([self.run_id])[0]

    # public API

    def start(self) -> TrainingJob:
        _acquire(self)
        self._thread = threading.Thread(target=self._run_locked, name=f"train-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> dict:
        _acquire(self)
        self._run_locked()
        return self.snapshot()

    def stop(self, save: bool = True) -> None:
        """Stop after the current step; ``save`` keeps the adapter (marked stopped), else it is discarded."""
        with self._lock:
            self._save_on_stop = save
            running = self.progress.state in (State.LOADING, State.RUNNING)
        self._stop.set()
        if running:
            self._set(state=State.STOPPING)

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def done(self) -> bool:
        return self.progress.state in FINAL_STATES

    def snapshot(self) -> dict:
        with self._lock:
            snap = asdict(self.progress)
        snap.update(task=self.config.task, run=self.run_id, started_at=self.started_at, finished_at=self.finished_at)
        return snap

    # internals

    @property
    def run_dir(self) -> Path:
        return paths.runs_dir() / self.run_id

    def _set(self, **changes: Any) -> None:
        if changes.get("state") == State.RUNNING and self._stop.is_set():
            changes["state"] = State.STOPPING
        with self._lock:
            for key, value in changes.items():
                setattr(self.progress, key, value)
        if "state" in changes:
            logger.info("%s: %s", self.run_id, changes["state"])
            self._record()

    def _record(self) -> None:
        if not self.is_main_process:
            return
        record = self.snapshot()
        record.update(state=str(record["state"]), pid=os.getpid(), config=asdict(self.config))
        record["task"] = paths.safe_name(self.config.task)
        try:
            _write_run(self.run_dir, record)
        except OSError as exc:  # the history is a convenience; never fail a training because of it
            logger.warning("could not write the run record: %s", exc)

    def _run_locked(self) -> None:
        try:
            self._train()
        except SimpleLoraError as exc:
            self._fail(exc.message, exc.code, exc.params)
        except Exception as exc:  # a bug or a resource error: keep the message, log the traceback
            logger.error("training %s failed:\n%s", self.run_id, traceback.format_exc())
            self._fail(*_describe(exc))
        finally:
            self.finished_at = self.finished_at or _now()
            _release(self)
            _free_memory()

    def _fail(self, message: str, code: str, params: dict | None = None) -> None:
        self.finished_at = _now()
        self._set(state=State.FAILED, error=message, error_code=code, error_params=_plain_params(params or {}))

    def _stopped_early(self) -> bool:
        return self._stop.is_set()

    def _train(self) -> None:
        from .data import load_records
        from .loading import check_model_dir, load_tokenizer
        from .masking import encode_records, to_dataset
        from .prompts import prompt_style

        cfg = self.config
        paths.safe_name(cfg.task)  # refuse an unusable name before any work
        self._set(state=State.LOADING)
        base = check_model_dir(cfg.base)
        device = device_kind()
        quantization = effective_quantization(cfg.quantization, device)
        resume = latest_checkpoint(cfg.task) if cfg.resume else None
        if cfg.resume and resume is None:
            raise TrainingError(f"There is no checkpoint of task {cfg.task} to resume.", code="no_checkpoint")
        report = load_records(cfg.data, cfg.format)
        records = report.usable(skip_invalid=cfg.skip_invalid)
        tokenizer = load_tokenizer(base, trust_remote_code=cfg.trust_remote_code)
        examples, rows, stats = encode_records(records, tokenizer, cfg.max_length)
        if not examples:
            raise TrainingError(
                f"No example has anything left to train at max length {cfg.max_length}.",
                code="nothing_to_train",
                max_length=cfg.max_length,
            )
        train_set, eval_set = _split(to_dataset(examples, rows), cfg.val_split, cfg.seed)
        dataset_info = {
            "name": report.name,
            "sha256": report.sha256,
            "format": report.format,
            "rows_total": report.total_rows,
            "rows_invalid_skipped": report.invalid_rows,
            "examples_used": len(examples),
            "examples_dropped": sum(stats.dropped.values()),
            "examples_truncated": stats.truncated,
            "train_examples": len(train_set),
            "eval_examples": len(eval_set) if eval_set is not None else 0,
        }
        with self._lock:
            self.progress.detail.update(dataset=dataset_info, device=device, quantization=quantization)
        if self._stopped_early():
            return self._finish_without_adapter()

        self._checkpointing = cfg.checkpointing(quantization, device)
        with self._lock:
            self.progress.detail.update(gradient_checkpointing=self._checkpointing)
        model, selection = self._build_model(base, quantization, device)
        if self._stopped_early():
            return self._finish_without_adapter()

        trainer = self._trainer(model, tokenizer, train_set, eval_set, device)
        if self._stopped_early():  # stopped while loading: nothing was trained, nothing to keep
            return self._finish_without_adapter()
        self._set(state=State.RUNNING, total_steps=trainer.state.max_steps or self._planned_steps(len(train_set)))
        if eval_set is not None:
            self._set(eval_loss_before=_metric(trainer.evaluate(), "eval_loss"))
        self._started = time.monotonic()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        stopped = self._stopped_early()
        if stopped and not self._save_on_stop:
            return self._finish_without_adapter()
        if eval_set is not None:
            self._set(eval_loss_after=_metric(trainer.evaluate(), "eval_loss"))

        status = State.STOPPED if stopped else State.COMPLETED
        adapter_dir = None
        if self.is_main_process:
            meta = self._meta(base, tokenizer, selection, dataset_info, status, prompt_style(tokenizer).value)
            dest = adapters.unique_dir(paths.lora_dir(), self.run_id)
            adapter_dir = str(adapters.save_adapter(model, tokenizer, meta, dest))
        if status == State.COMPLETED and self.is_main_process:  # checkpoints only serve to resume
            shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
        self.finished_at = _now()
        self._set(state=status, adapter_dir=adapter_dir, eta_s=0.0)

    def _finish_without_adapter(self) -> None:
        self.finished_at = _now()
        self._set(state=State.STOPPED, adapter_dir=None)

    def _planned_steps(self, n_train: int) -> int:
        cfg = self.config
        world = int(os.environ.get("WORLD_SIZE", "1"))
        per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * world)) // cfg.grad_accum)
        return cfg.max_steps if cfg.max_steps > 0 else math.ceil(per_epoch * cfg.epochs)

    def _build_model(self, base: Path, quantization: str, device: str) -> tuple[Any, Any]:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import set_seed

        from .targets import resolve_targets

        cfg = self.config
        set_seed(cfg.seed)
        model = load_base_model(base, quantization, device, cfg.trust_remote_code)
        model_type = getattr(model.config, "model_type", None)
        selection = resolve_targets(model, cfg.targets, model_type)
        if quantization in ("4bit", "8bit"):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self._checkpointing)
        elif self._checkpointing:
            model.enable_input_require_grads()
        lora = LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=selection.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        if device != "cuda":
            # Same dropout distribution with a twentieth of the random draws (CUDA's dropout is cheap already).
            from .dropout import use_sparse_dropout

            use_sparse_dropout(model)
        trainable, total = model.get_nb_trainable_parameters()
        with self._lock:
            self.progress.detail.update(
                trainable_params=int(trainable),
                total_params=int(total),
                target_modules=selection.target_modules,
                targets_source=selection.source,
                model_type=selection.model_type,
            )
        return model, selection

    def _trainer(self, model: Any, tokenizer: Any, train_set: Any, eval_set: Any, device: str) -> Any:
        import torch
        from transformers import PrinterCallback, TrainingArguments

        from .masking import collate, pad_id_of

        cfg = self.config
        steps = self._planned_steps(len(train_set))
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
        args = TrainingArguments(
            output_dir=str(self.run_dir / "checkpoints"),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.scheduler,
            warmup_steps=cfg.warmup_ratio,
            weight_decay=0.0,
            seed=cfg.seed,
            data_seed=cfg.seed,
            logging_steps=max(1, steps // 200),  # a 10-step run still draws a curve
            eval_strategy="steps" if eval_set is not None else "no",
            eval_steps=max(1, steps // 10),
            save_strategy="steps",
            save_steps=max(10, steps // 4),
            save_total_limit=1,
            report_to="none",
            disable_tqdm=True,
            use_cpu=device != "cuda",
            bf16=bf16,
            fp16=device == "cuda" and not bf16,
            activation_checkpointing=self._checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if self._checkpointing else None,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            ddp_find_unused_parameters=False,
            optim="adamw_torch",
            # Batches of similar lengths (LengthBatches below): every example is still seen once per epoch, and
            # padding falls from about half the tokens to a few percent.
            train_sampling_strategy="group_by_length",
            length_column_name="length",
        )
        train_set = train_set.remove_columns(["row"])
        eval_set = eval_set.remove_columns(["row", "length"]) if eval_set is not None else None
        trainer = _trainer_class()(
            model=model,
            args=args,
            data_collator=partial(self._collate, collate, pad_id_of(tokenizer)),
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=tokenizer,
            callbacks=[_progress_callback(self)],
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        return trainer

    def _collate(self, collate_fn: Any, pad_id: int, features: list[dict]) -> dict:
        batch = collate_fn([{k: f[k] for k in ("input_ids", "labels")} for f in features], pad_id)
        self._tokens += int(batch["attention_mask"].sum())
        self._computed_tokens += batch["input_ids"].numel()  # padding included
        return batch

    def _meta(self, base: Path, tokenizer: Any, selection: Any, dataset_info: dict, status: State, style: str) -> dict:
        import peft
        import torch
        import transformers

        snap = self.snapshot()
        cfg = asdict(self.config)
        hyper = {k: cfg[k] for k in cfg if k not in ("base", "data", "task", "resume", "trust_remote_code")}
        hyper["gradient_checkpointing"] = self._checkpointing  # what was used, also when left to the default
        return {
            "status": str(status),
            "task": paths.safe_name(self.config.task),
            "run": self.run_id,
            "base_model": str(base),
            "base_model_name": base.name,
            "base_fingerprint": adapters.base_fingerprint(base),
            "architecture": selection.model_type,
            "target_modules": selection.target_modules,
            "targets_source": selection.source,
            "hyperparameters": hyper,
            "dataset": dataset_info,
            "loss_history": snap["loss"],
            "eval_history": snap["eval_loss"],
            "eval_loss_before": snap["eval_loss_before"],
            "eval_loss_after": snap["eval_loss_after"],
            "steps": snap["step"],
            "trainable_params": snap["detail"].get("trainable_params"),
            "device": snap["detail"].get("device"),
            "quantization": snap["detail"].get("quantization"),
            "prompt_format": style,
            "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
            "started_at": self.started_at,
            "finished_at": _now(),
            "versions": {
                "simple_lora": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
            },
        }


def _split(dataset: Any, val_split: float, seed: int) -> tuple[Any, Any]:
    n = len(dataset)
    n_eval = round(n * val_split) if val_split > 0 else 0
    if n_eval == 0 or n - n_eval < 1:
        return dataset, None
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return dataset.select(sorted(order[n_eval:])), dataset.select(sorted(order[:n_eval]))


def _plain_params(params: dict) -> dict:
    """An error's params as JSON-able text and numbers (for run.json and a translated message)."""

    def plain(value: Any) -> Any:
        if isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, list | tuple | set):
            return ", ".join(str(v) for v in value)
        return str(value)

    return {key: plain(value) for key, value in params.items()}


def _metric(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _describe(exc: BaseException) -> tuple[str, str]:
    """An unexpected error as (message, code): out of memory and a full disk get their own advice."""
    if "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        advice = "lower the batch size or the max length, or enable gradient checkpointing"
        return f"Out of memory: {advice}.", "out_of_memory"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"The disk is full ({exc.strerror}); free some space and train again.", "disk_full"
    return f"{type(exc).__name__}: {exc}", "crashed"


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# Architectures whose logits are exactly lm_head(last hidden state): no scaling, no soft-capping. For them the
# loss is computed from the hidden states of the trained positions only (see completion_loss).
PLAIN_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def completion_loss(model: Any, inputs: dict, num_items_in_batch: Any = None) -> Any | None:
    """The causal-LM loss of a PEFT model on ``inputs``, with the LM head and the cross-entropy computed only at
    the positions that are trained (the replies), not at every position: the prompt's logits (often half the
    tokens, and with a large vocabulary a large share of the work) are never built. Same value as the model's own
    loss (sum over trained tokens / ``num_items_in_batch``, else their mean). None when ``model`` is not a plain
    causal LM of a known architecture, or is wrapped for distributed training: the caller uses the usual path."""
    import torch.nn.functional as F

    from .masking import IGNORE_INDEX

    get_base = getattr(model, "get_base_model", None)
    causal = get_base() if get_base else None
    if causal is None or getattr(causal.config, "model_type", None) not in PLAIN_HEAD_TYPES:
        return None
    if getattr(causal.config, "final_logit_softcapping", None) or getattr(causal.config, "logit_scale", None):
        return None
    labels = inputs["labels"]
    hidden = causal.model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")).last_hidden_state
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    logits = causal.lm_head(hidden[:, :-1][trained]).float()
    loss = F.cross_entropy(logits, targets[trained], reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else trained.sum().clamp(min=1))


def length_grouped_order(lengths: list[int], batch: int, seed: int, group_batches: int = 50) -> list[int]:
    """An epoch's example order whose consecutive ``batch``-sized slices hold examples of similar length.

    The examples are shuffled, cut into groups of ``group_batches`` batches (one group when the dataset is
    smaller: transformers' own sampler then uses groups of a few batches only, and pads far more), sorted by
    length within each group, cut into batches, and the full batches shuffled. Every example appears exactly once."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch * group_batches
    batches = []
    for start in range(0, len(order), group):
        ranked = sorted(order[start : start + group], key=lambda i: lengths[i], reverse=True)
        batches += [ranked[i : i + batch] for i in range(0, len(ranked), batch)]
    # The data loader cuts the order into batches again: a short batch must stay last, or every batch after it
    # would straddle two of these.
    short = [b for b in batches if len(b) < batch]
    full = [b for b in batches if len(b) == batch]
    rng.shuffle(full)
    return [i for b in full + short for i in b]


class LengthBatches:
    """A sampler over ``length_grouped_order``; a new order every epoch (``set_epoch``, as the Trainer calls)."""

    def __init__(self, lengths: list[int], batch: int, seed: int) -> None:
        self.lengths, self.batch, self.seed, self.epoch = list(lengths), batch, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(length_grouped_order(self.lengths, self.batch, self.seed + self.epoch))


def _trainer_class() -> type:
    from transformers import Trainer

    class _Trainer(Trainer):
        """Trainer whose training loss skips the untrained positions' logits (``completion_loss``) and whose
        batches are grouped by length (``LengthBatches``)."""

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if dataset is None or "length" not in getattr(dataset, "column_names", ()):
                return super()._get_train_sampler(train_dataset)
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthBatches(dataset["length"], batch, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not return_outputs and "labels" in inputs and model is self.accelerator.unwrap_model(model):
                loss = completion_loss(model, inputs, num_items_in_batch)
                if loss is not None:
                    return loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return _Trainer


def _progress_callback(job: TrainingJob) -> Any:
    """A transformers ``TrainerCallback`` with ``_ProgressEvents``' methods, built when a training starts."""
    from transformers import TrainerCallback

    return type("_ProgressCallback", (_ProgressEvents, TrainerCallback), {})(job)


class _ProgressEvents:
    """Publishes Trainer events into the job's progress and honours Stop after the current step. Mixed into
    ``TrainerCallback`` by ``_progress_callback``: importing this module does not import transformers."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.last_time: float | None = None
        self.last_tokens = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.job._set(total_steps=state.max_steps)
        self.last_time, self.last_tokens = time.monotonic(), self.job._tokens

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        job = self.job
        now = time.monotonic()
        elapsed = now - job._started
        done = max(1, state.global_step)
        rate = (job._tokens - self.last_tokens) / max(1e-6, now - (self.last_time or now))
        self.last_time, self.last_tokens = now, job._tokens
        eta = elapsed / done * max(0, state.max_steps - state.global_step)
        job._set(
            step=state.global_step,
            epoch=float(state.epoch or 0.0),
            elapsed_s=elapsed,
            eta_s=eta,
            tokens_per_s=0.7 * job.progress.tokens_per_s + 0.3 * rate if job.progress.tokens_per_s else rate,
        )
        if job._stop.is_set():
            control.should_training_stop = True
            control.should_save = job._save_on_stop  # a checkpoint to --resume from
        return control

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.job._stop.is_set():  # during gradient accumulation: do not wait for the whole step
            control.should_training_stop = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        job = self.job
        with job._lock:
            if "loss" in logs and math.isfinite(logs["loss"]):
                job.progress.loss.append([state.global_step, float(logs["loss"])])
            if "eval_loss" in logs and math.isfinite(logs["eval_loss"]):
                point = [state.global_step, float(logs["eval_loss"])]
                history = job.progress.eval_loss
                if history and history[-1][0] == point[0]:  # the final evaluation repeats the last one
                    history[-1] = point
                else:
                    history.append(point)
            if "learning_rate" in logs:
                job.progress.learning_rate = float(logs["learning_rate"])
        job._record()


# --- before Start: what will be trained, and roughly how much memory it needs ----------------------------------


@dataclass(frozen=True)
class Estimate:
    model_type: str
    target_modules: list[str]
    targets_source: str
    targets_reason: str
    linear_modules: list[str]
    total_params: int
    lora_params: int
    quantization: str
    device: str
    memory_bytes: int  # weights + LoRA optimizer state + activations, rough

    def to_json(self) -> dict:
        return asdict(self)


def estimate(
    base: str | Path,
    targets: str = "all-linear",
    rank: int = 16,
    batch_size: int = 4,
    max_length: int = 1024,
    quantization: str = "auto",
    gradient_checkpointing: bool | None = None,
    trust_remote_code: bool = False,
) -> Estimate:
    """Trainable parameters and a memory estimate from the model's config alone (nothing is loaded)."""

    from .targets import meta_model, resolve_targets

    model, model_type = meta_model(base, trust_remote_code=trust_remote_code)
    selection = resolve_targets(model, targets, model_type)
    device = device_kind()
    quant = effective_quantization(quantization, device)
    total = sum(p.numel() for p in model.parameters())
    lora = 0
    for name, module in model.named_modules():
        if any(name == t or name.endswith("." + t) for t in selection.target_modules):
            weight = getattr(module, "weight", None)
            if weight is not None and weight.dim() == 2:
                rows, cols = weight.shape
                lora += rank * (rows + cols)
    bytes_per_weight = {"4bit": 0.56, "8bit": 1.1, "none": 4.0 if device == "cpu" else 2.0}[quant]
    config = model.config
    hidden = getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0)
    layers = getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0)
    vocab = getattr(config, "vocab_size", 0)
    act_bytes = 4 if device == "cpu" else 2
    checkpointing = uses_checkpointing(gradient_checkpointing, quant, device)
    per_token = hidden * (2 if checkpointing else 18) * layers * act_bytes + vocab * 4 * 2  # + logits
    memory = int(total * bytes_per_weight + lora * 16 + batch_size * max_length * per_token)
    return Estimate(
        model_type=selection.model_type,
        target_modules=selection.target_modules,
        targets_source=selection.source,
        targets_reason=selection.reason,
        linear_modules=selection.linear_modules,
        total_params=int(total),
        lora_params=int(lora),
        quantization=quant,
        device=device,
        memory_bytes=memory,
    )
