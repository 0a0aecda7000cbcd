"""Training: ``TrainingJob``, a background thread running transformers' ``Trainer`` over a ``TrainConfig``.

One training at a time per process (a process-wide lock). States (``runs.State``):
queued -> loading -> running -> stopping -> completed | stopped | failed; a run left "running" by a process that
died is shown as "interrupted". The UI polls ``job.snapshot()``, so closing the browser never stalls training.
A run goes through five named steps: prepare the data, build the model, fit, evaluate, save. Its record and
checkpoints live in ``Runs/<run>/`` (runs.py); the adapter goes to ``Models/LoRA/<run>/`` (adapters.py).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import adapters, models, paths
from .config import TrainConfig
from .errors import SimpleLoraError, TrainingError, plain_params, unexpected
from .manifest import DatasetInfo, Manifest, library_versions
from .runs import (
    ACTIVE_STATES,
    FINAL_STATES,
    State,
    active_job,
    claim,
    latest_checkpoint,
    now,
    reconcile_runs,
    release,
    unique_run_id,
    write_run,
)

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "State", "TrainConfig", "TrainingError", "TrainingJob", "active_job"]

logger = logging.getLogger(__name__)
# A running job's record is rewritten for its losses at most this often (state changes are written at once).
RECORD_EVERY_S = 2.0
ACTIVE_BEFORE_STOP = (State.LOADING, State.RUNNING)  # the states Stop can change


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
    # dpo / orpo: reward margin, preference accuracy and log odds ratio as logged ([step, value] each)
    preference: dict[str, list[list[float]]] = field(default_factory=dict)
    learning_rate: float = 0.0
    tokens_per_s: float = 0.0
    threads: int = 0  # CPU threads the training uses now (threads.ThreadPolicy); 0 on a GPU
    eta_s: float | None = None
    elapsed_s: float = 0.0
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    samples: list[dict] = field(default_factory=list)  # sampling.Sample: answers during the run
    evaluation: dict = field(default_factory=dict)  # after the run: Evaluation.summary(), or {"error": code}
    adapter_dir: str | None = None
    error: str | None = None
    error_code: str | None = None
    error_params: dict = field(default_factory=dict)  # the error's params, for a translated message
    detail: dict = field(default_factory=dict)  # dataset counts, trainable params, targets, device


@dataclass
class Prepared:
    """What the data step hands to the others."""

    base: Path
    device: str
    quantization: str
    tokenizer: Any
    train_set: Any
    eval_set: Any
    dataset: DatasetInfo
    resume: Path | None
    sample_records: list[Any] = field(default_factory=list)
    report: Any = None  # data.DatasetReport of the rows used (the evaluation answers its held-out rows)


class Stopped(Exception):
    """Raised between steps when Stop was pressed before anything was trained: nothing is kept."""


class TrainingJob:
    """One training run. ``start()`` runs it on a background thread; ``run()`` runs it in the caller's thread."""

    def __init__(self, config: TrainConfig) -> None:
        config.check()
        self.config = config
        self.user = paths.current_user()  # the workspace the run belongs to (its thread works there too)
        self.run_id = unique_run_id(config.task)
        self.progress = Progress()
        self._lock = threading.Lock()
        self._publishing = threading.Lock()  # one state change at a time, each on disk before it is in memory
        self._stop = threading.Event()
        self._save_on_stop = True
        self._thread: threading.Thread | None = None
        self._tokens = 0  # real (non-pad) tokens batched so far, for tokens/s
        self._computed_tokens = 0  # padding included
        self._checkpointing = bool(config.gradient_checkpointing)  # resolved for the device in _build_model
        self._made: int | None = None  # memory.epoch() when the run's model was made (after memory.settle())
        self._recorded = 0.0  # time.monotonic() of the last run record written
        self.started_at = now()
        self.finished_at: str | None = None
        self.is_main_process = int(os.environ.get("RANK", "0")) == 0
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun / accelerate launch: one run name for all ranks
            import torch
            from accelerate import PartialState
            from accelerate.utils import broadcast_object_list

            PartialState(cpu=not torch.cuda.is_available())  # without cpu=True it sees one process on a CPU
            self.run_id = broadcast_object_list([self.run_id])[0]

    # --- public API ---

    def start(self) -> TrainingJob:
        claim(self)
        models.before_threads()
        self._thread = threading.Thread(target=self._run_locked, name=f"train-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> dict:
        claim(self)
        self._run_locked()
        return self.snapshot()

    def stop(self, save: bool = True) -> None:
        """Stop after the current step; ``save`` keeps the adapter (marked stopped), else it is discarded."""
        with self._lock:
            self._save_on_stop = save
        self._stop.set()
        self.publish(state=State.STOPPING)  # only while loading or running (publish checks it under the lock)

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def done(self) -> bool:
        return self.progress.state in FINAL_STATES

    def snapshot(self, progress: Progress | None = None) -> dict:
        with self._lock:
            snap = asdict(progress or self.progress)
        snap.update(task=self.config.task, run=self.run_id, started_at=self.started_at, finished_at=self.finished_at,
                    dataset_name=self.config.dataset_name, method=self.config.method)  # fmt: skip
        return snap

    @property
    def run_dir(self) -> Path:
        return paths.workspace(self.user) / "Runs" / self.run_id

    # --- what the progress callback reports to (trainer.Publisher) ---

    def publish(self, **changes: Any) -> None:
        """Change the run's progress. A new state is written to the run record first and shown after: a page that
        sees it (in ``snapshot()``) and then reads the history finds it there too."""
        if changes.get("state") == State.RUNNING and self._stop.is_set():
            changes["state"] = State.STOPPING
        with self._publishing:
            with self._lock:
                if changes.get("state") == State.STOPPING and self.progress.state not in ACTIVE_BEFORE_STOP:
                    del changes["state"]  # the run ended (or never began) meanwhile: its state stays
                staged = replace(self.progress, **changes) if "state" in changes else None
            if staged is not None:
                logger.info("%s: %s", self.run_id, changes["state"])
                self._record(progress=staged)
            with self._lock:
                for key, value in changes.items():
                    setattr(self.progress, key, value)

    def add_log(self, step: int, logs: dict) -> None:
        with self._lock:
            if "loss" in logs and math.isfinite(logs["loss"]):
                self.progress.loss.append([step, float(logs["loss"])])
            if "eval_loss" in logs and math.isfinite(logs["eval_loss"]):
                history = self.progress.eval_loss
                if history and history[-1][0] == step:  # the final evaluation repeats the last one
                    history.pop()
                history.append([step, float(logs["eval_loss"])])
            if "learning_rate" in logs:
                self.progress.learning_rate = float(logs["learning_rate"])
            if self.config.preference and "loss" in logs:  # a training log (evaluation logs are eval_...)
                from .pairs import PLOTTED

                for name, key in PLOTTED.items():
                    if key in logs and math.isfinite(logs[key]):
                        self.progress.preference.setdefault(name, []).append([step, float(logs[key])])
        # Logged every step: writing the whole record (its loss history included) each time cost more the longer
        # the run; a state change, samples and the end always write it.
        self._record(every=RECORD_EVERY_S)

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def keep_on_stop(self) -> bool:
        return self._save_on_stop

    def tokens_seen(self) -> int:
        return self._tokens

    def add_samples(self, samples: list[dict]) -> None:
        with self._lock:
            self.progress.samples.extend(samples)
        self._record()

    def note(self, **values: Any) -> None:
        """Facts about the run for its record and the UI (``detail``)."""
        self._detail(**values)

    # --- the run ---

    def _detail(self, **values: Any) -> None:
        with self._lock:
            self.progress.detail.update(values)

    def _record(self, every: float = 0.0, progress: Progress | None = None) -> None:
        """Write the run record; with ``every``, only when the last one is at least that many seconds old (the
        page shows a run's progress from the job itself; the record is its history, and what is left of it after
        a crash)."""
        if not self.is_main_process or (every and time.monotonic() - self._recorded < every):
            return
        self._recorded = time.monotonic()
        record = self.snapshot(progress)
        record.update(state=str(record["state"]), pid=os.getpid(), config=asdict(self.config))
        record["task"] = paths.safe_name(self.config.task)
        try:
            write_run(self.run_dir, record)
        except OSError as exc:  # the history is a convenience; never fail a training because of it
            logger.warning("could not write the run record: %s", exc)

    def _run_locked(self) -> None:
        with paths.as_user(self.user):
            self._run_in_workspace()

    def _run_in_workspace(self) -> None:
        try:
            if self.is_main_process:
                reconcile_runs()
            self._train()
        except Stopped:
            self._finish(State.STOPPED, None)
        except SimpleLoraError as exc:
            self._fail(exc.message, exc.code, exc.params)
        except Exception as exc:  # a bug or a resource error: keep the message, log the traceback
            logger.error("training %s failed:\n%s", self.run_id, traceback.format_exc())
            err = unexpected(exc)
            self._fail(err.message, err.code, err.params)
        finally:
            self.finished_at = self.finished_at or now()
            release(self)
            # None: everything frozen at the start is given back to the collector too (the job itself, an export
            # or an import running when it started), so that nothing frozen outlives the run
            _free_memory(None)

    def _fail(self, message: str, code: str, params: dict) -> None:
        self.finished_at = now()
        self.publish(state=State.FAILED, error=message, error_code=code, error_params=plain_params(params))

    def _finish(self, status: State, adapter_dir: str | None) -> None:
        self.finished_at = now()
        self.publish(state=status, adapter_dir=adapter_dir, **({"eta_s": 0.0} if adapter_dir else {}))

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped

    def _train(self) -> None:
        from . import memory

        models.device_kind()  # without a GPU, bitsandbytes is hidden before PEFT is imported (hide_bitsandbytes)
        with memory.paused():
            from . import trainer as _imports  # noqa: F401 (torch, transformers and PEFT, imported before the freeze)
        from .threads import ThreadPolicy

        memory.settle()  # later collections skip what the imports made
        self._made = memory.epoch()

        # Watching the machine from now on, its first choice of threads at the first step (on a CPU) sees what
        # other processes did while the data and the model were loaded.
        self._threads = ThreadPolicy()
        self._thread_callback = None
        prepared = self._prepare_data()
        self._check_stop()
        model, selection = self._build_model(prepared)
        self._check_stop()
        trainer = self._trainer(model, prepared)
        self._check_stop()  # stopped while loading: nothing was trained, nothing to keep
        self._fit(trainer, prepared)
        stopped = self._stop.is_set()
        if stopped and not self._save_on_stop:
            raise Stopped
        if prepared.eval_set is not None:
            self.publish(eval_loss_after=self._evaluate(trainer))
        status = State.STOPPED if stopped else State.COMPLETED
        adapter_dir = self._save(model, prepared, selection, status) if self.is_main_process else None
        if status == State.COMPLETED and self.is_main_process:  # checkpoints only serve to resume
            shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
        del trainer, model  # the evaluation loads the saved adapter afresh, for inference
        if adapter_dir and not stopped and self.config.eval_rows > 0:
            _free_memory(self._made)
            self._evaluate_adapter(Path(adapter_dir), prepared)
        self._finish(status, adapter_dir)

    def _evaluate_adapter(self, adapter_dir: Path, prepared: Prepared) -> None:
        """The adapter's evaluation card (``evaluation.evaluate``). The adapter is already saved: a failure here is
        logged and shown, and never fails the run; Stop ends it with nothing written."""
        from .evaluation import evaluate

        self._detail(phase="evaluating")
        cfg = self.config
        try:
            result = evaluate(adapter_dir, prepared.report, base=prepared.base, limit=cfg.eval_rows,
                              stop=self._stop, trust_remote_code=cfg.trust_remote_code,
                              during_training=True)  # fmt: skip
            summary = result.summary() if result is not None else {"error": "stopped"}
        except SimpleLoraError as exc:
            logger.warning("evaluation of %s: %s", adapter_dir.name, exc.message)
            summary = {"error": exc.code, "params": plain_params(exc.params)}
        except Exception:  # a bug or a resource error: the adapter stays, the card is missing
            logger.error("evaluation of %s failed:\n%s", adapter_dir.name, traceback.format_exc())
            summary = {"error": "unexpected"}
        self._detail(phase="")
        self.publish(evaluation=summary)

    def _prepare_data(self) -> Prepared:
        """Check the names, read and encode the dataset, split off the validation rows."""
        from .estimate import check_fits
        from .masking import encode_records, split_dataset, to_dataset
        from .mixing import load_mix, repeat_rows
        from .models import check_model_dir, load_tokenizer
        from .sampling import choose

        cfg = self.config
        paths.safe_name(cfg.task)  # refuse an unusable name before any work
        self.publish(state=State.LOADING)
        base = check_model_dir(cfg.base)
        check_fits(cfg)
        device = models.device_kind()
        quantization = models.effective_quantization(cfg.quantization, device)
        resume = latest_checkpoint(cfg.task) if cfg.resume else None
        if cfg.resume and resume is None:
            raise TrainingError("no_checkpoint", task=cfg.task)
        mix = load_mix(cfg.sources(), cfg.seed, cfg.skip_invalid)
        report, records = mix.report, list(mix.report.records)
        check_method(cfg, records, report.name)
        tokenizer = load_tokenizer(base, trust_remote_code=cfg.trust_remote_code)
        if cfg.preference:
            from .pairs import encode_pairs, to_pair_dataset

            examples, rows, stats = encode_pairs(records, tokenizer, cfg.max_length)
            encoded = to_pair_dataset(examples, rows) if examples else None
        else:
            examples, rows, stats = encode_records(records, tokenizer, cfg.max_length)
            encoded = to_dataset(examples, rows) if examples else None
        if not examples:
            raise TrainingError("nothing_to_train", max_length=cfg.max_length)
        train_set, eval_set = split_dataset(encoded, cfg.val_split, cfg.seed)
        held_out = list(eval_set["row"]) if eval_set is not None else []
        chosen = choose(records, list(train_set["row"]), held_out, cfg.sample_rows, report.name)
        train_set = repeat_rows(train_set, mix.copies)
        dataset = DatasetInfo(
            name=cfg.dataset_name, sha256=report.sha256, format=report.format, rows_total=report.total_rows,
            rows_invalid_skipped=sum(p["rows_total"] - p["rows_valid"] for p in mix.parts),
            examples_used=len(examples),
            examples_dropped=sum(stats.dropped.values()), examples_truncated=stats.truncated,
            train_examples=len(train_set), eval_examples=len(eval_set) if eval_set is not None else 0,
            columns=mix.parts[0]["columns"] if len(mix.parts) == 1 else "", parts=mix.parts,
        )  # fmt: skip
        self._detail(dataset=asdict(dataset), device=device, quantization=quantization)
        return Prepared(base, device, quantization, tokenizer, train_set, eval_set, dataset, resume, chosen, report)

    def _build_model(self, prepared: Prepared) -> tuple[Any, Any]:
        """The base model with fresh LoRA layers on the chosen targets."""
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import set_seed

        from .targets import resolve_targets

        cfg = self.config
        self._checkpointing = cfg.checkpointing(prepared.quantization, prepared.device)
        self._detail(gradient_checkpointing=self._checkpointing)
        set_seed(cfg.seed)
        model = models.load_base_model(prepared.base, prepared.quantization, prepared.device, cfg.trust_remote_code)
        selection = resolve_targets(model, cfg.targets, getattr(model.config, "model_type", None))
        if prepared.quantization in ("4bit", "8bit"):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self._checkpointing)
        elif self._checkpointing:
            model.enable_input_require_grads()
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=selection.target_modules, bias="none", task_type="CAUSAL_LM")  # fmt: skip
        model = get_peft_model(model, lora)
        if prepared.device != "cuda":
            # Same dropout distribution with a twentieth of the random draws (CUDA's dropout is cheap already),
            # the LoRA branch without its full-size element-wise passes (lora_core/fused_lora.py), grouped
            # key/value heads not repeated for each query head (lora_core/grouped_attention.py), and the rotary
            # embedding in one autograd step (lora_core/rotary.py).
            from .dropout import use_sparse_dropout
            from .fused_lora import use_fused_lora
            from .grouped_attention import use_grouped_kv_on_cpu
            from .rotary import use_fused_rotary_on_cpu

            use_sparse_dropout(model)
            use_fused_lora(model)
            use_grouped_kv_on_cpu()
            use_fused_rotary_on_cpu(selection.model_type)
        trainable, total = model.get_nb_trainable_parameters()
        self._detail(trainable_params=int(trainable), total_params=int(total), target_modules=selection.target_modules,
                     targets_source=selection.source, model_type=selection.model_type)  # fmt: skip
        return model, selection

    def _trainer(self, model: Any, prepared: Prepared) -> Any:
        from transformers import PrinterCallback

        from .config import cpu_piece_tokens
        from .masking import collate, pad_id_of
        from .trainer import ProgressCallback, SimpleTrainer, ThreadCallback, training_arguments

        steps = self.planned_steps(len(prepared.train_set))
        settings = (self.config, str(self.run_dir / "checkpoints"), steps, prepared.device, self._checkpointing,
                    prepared.eval_set is not None)  # fmt: skip
        eval_set = prepared.eval_set
        common = dict(
            model=model,
            train_dataset=prepared.train_set.remove_columns(["row"]),
            # (the evaluation's sampler groups by length too: pairs keep theirs, instruction rows have input_ids)
            eval_dataset=eval_set.remove_columns(["row", *([] if self.config.preference else ["length"])])
            if eval_set is not None
            else None,
            processing_class=prepared.tokenizer,
            callbacks=[ProgressCallback(self), *self._sample_callback(prepared)],
        )
        if self.config.preference:
            from trl.trainer.dpo_trainer import DataCollatorForPreference

            from .preference_trainer import PreferenceTrainer, preference_arguments

            collator = DataCollatorForPreference(pad_token_id=pad_id_of(prepared.tokenizer))
            trainer = PreferenceTrainer(args=preference_arguments(*settings), method=self.config.method,
                                        data_collator=partial(self._count, collator), **common)  # fmt: skip
        else:
            single = int(os.environ.get("WORLD_SIZE", "1")) == 1  # SimpleTrainer cuts no batch under DDP
            pieces = cpu_piece_tokens() if prepared.device == "cpu" and single else 0
            trainer = SimpleTrainer(args=training_arguments(*settings),
                                    data_collator=partial(self._collate, collate, pad_id_of(prepared.tokenizer),
                                                          pieces),
                                    **common)  # fmt: skip
            trainer.piece_tokens = pieces
        if prepared.device == "cpu":
            self._thread_callback = ThreadCallback(self, self._threads)
            trainer.add_callback(self._thread_callback)
        trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
        return trainer

    def _sample_callback(self, prepared: Prepared) -> list[Any]:
        from .prompts import prompt_style
        from .sampling import Sampler
        from .trainer import SampleCallback

        if not (self.config.samples and prepared.sample_records and self.is_main_process):
            return []
        import transformers.generation.utils  # noqa: F401  (imported now, not inside the first sample's time)

        sampler = Sampler(prepared.tokenizer, prepared.sample_records, self.config.samples,
                          prompt_style(prepared.tokenizer).value)  # fmt: skip
        return [SampleCallback(self, sampler)]

    def _collate(self, collate_fn: Any, pad_id: int, piece_tokens: int, features: list[dict]) -> dict:
        return self._count(lambda fs: collate_fn(fs, pad_id), [{k: f[k] for k in ("input_ids", "labels")}
                                                                for f in features], piece_tokens)  # fmt: skip

    def _count(self, collate_fn: Any, features: list[dict], piece_tokens: int = 0) -> dict:
        """Collate, counting the real tokens and the tokens computed (padding included; in a batch computed in
        pieces, each piece's own padding: ``trainer.pieces``)."""
        from .trainer import computed_tokens

        batch = collate_fn(features)
        lengths = batch["attention_mask"].sum(1).tolist()
        self._tokens += sum(lengths)
        self._computed_tokens += computed_tokens(lengths, batch["input_ids"].shape[1], piece_tokens)
        return batch

    def _fit(self, trainer: Any, prepared: Prepared) -> None:
        """Train (from the checkpoint when resuming), with the eval loss of the untouched base before it."""
        total = trainer.state.max_steps or self.planned_steps(len(prepared.train_set))
        self.publish(state=State.RUNNING, total_steps=total)
        if prepared.eval_set is not None:
            self.publish(eval_loss_before=self._evaluate(trainer))
        try:
            trainer.train(resume_from_checkpoint=str(prepared.resume) if prepared.resume else None)
        finally:  # ended, stopped or failed: the process gets its thread count back
            if self._thread_callback is not None:
                self._thread_callback.restore()
        self._record()  # the whole curve, before the evaluation and the save (the losses are written every 2 s)

    def _evaluate(self, trainer: Any) -> float | None:
        from .trainer import finite

        return finite(trainer.evaluate(), "eval_loss")

    def _save(self, model: Any, prepared: Prepared, selection: Any, status: State) -> str:
        manifest = self._manifest(prepared, selection, status)
        dest = adapters.unique_dir(paths.lora_dir(), self.run_id)
        return str(adapters.save_adapter(model, prepared.tokenizer, manifest, dest))

    def planned_steps(self, n_train: int) -> int:
        cfg = self.config
        world = int(os.environ.get("WORLD_SIZE", "1"))
        per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * world)) // cfg.grad_accum)
        return cfg.max_steps if cfg.max_steps > 0 else math.ceil(per_epoch * cfg.epochs)

    def _manifest(self, prepared: Prepared, selection: Any, status: State) -> Manifest:
        from .prompts import prompt_style

        snap = self.snapshot()
        source = models.source_of(prepared.base)
        settings = asdict(self.config)
        # the files' places stay on this machine: the dataset's parts name each one and its sha256
        private = ("base", "data", "datasets", "task", "resume", "trust_remote_code")
        hyper = {k: v for k, v in settings.items() if k not in private}
        hyper["gradient_checkpointing"] = self._checkpointing  # what was used, also when left to the default
        if self.config.preference:  # TRL's DPOTrainer turns dropout off: the policy and its reference match
            hyper["dropout"] = 0.0
        detail = snap["detail"]
        return Manifest(
            status=str(status), task=paths.safe_name(self.config.task), run=self.run_id,
            base_model=str(prepared.base), base_model_name=prepared.base.name,
            base_fingerprint=adapters.base_fingerprint(prepared.base), architecture=selection.model_type,
            base_repo_id=source.get("repo_id", ""), base_commit=source.get("commit", ""),
            target_modules=selection.target_modules, targets_source=selection.source, hyperparameters=hyper,
            method=self.config.method, preference_history=snap["preference"],
            dataset=prepared.dataset, loss_history=snap["loss"], eval_history=snap["eval_loss"],
            eval_loss_before=snap["eval_loss_before"], eval_loss_after=snap["eval_loss_after"], steps=snap["step"],
            samples=snap["samples"],
            trainable_params=detail.get("trainable_params"), device=detail.get("device"),
            quantization=detail.get("quantization"), prompt_format=prompt_style(prepared.tokenizer).value,
            has_chat_template=bool(getattr(prepared.tokenizer, "chat_template", None)),
            started_at=self.started_at, finished_at=now(), versions=library_versions(),
        )  # fmt: skip


def check_method(cfg: TrainConfig, records: list[Any], name: str) -> None:
    """Refuse a method that does not fit the rows: DPO / ORPO need preference pairs, SFT needs instruction rows."""
    pairs = any(r.is_pair for r in records)
    if cfg.preference and not all(r.is_pair for r in records):
        raise TrainingError("needs_pairs", method=cfg.method, file=name)
    if not cfg.preference and pairs:
        raise TrainingError("pairs_need_method", file=name)


def _free_memory(made: int | None) -> None:
    """Free what a run let go of (``memory.release``; ``made``: the epoch its model was made at) and, on CUDA, the
    cache of freed blocks."""
    from . import memory

    memory.release(made)
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
