"""The speed-ups and the wiring around transformers' ``Trainer``: batches of similar length, the loss computed only
at the trained positions, the ``Trainer`` subclass that uses both, the ``TrainingArguments`` of a run and the
callback that publishes progress and honours Stop.

Imports transformers at the top: ``training.py`` imports this module only when a training starts, so building the
page never pays for it.
"""

from __future__ import annotations

import random
import time
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments

from .config import CPU_PIECE_TOKENS, TrainConfig
from .masking import IGNORE_INDEX

# Architectures whose logits are exactly lm_head(last hidden state): no scaling, no soft-capping. For them the
# loss is computed from the hidden states of the trained positions only (see completion_loss).
PLAIN_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3"}
# Sort within groups of this many batches: large enough to pad little, small enough to keep epochs random.
GROUP_BATCHES = 50


def completion_loss(model: Any, inputs: dict, num_items_in_batch: Any = None) -> Any | None:
    """The causal-LM loss of a PEFT model on ``inputs``, with the LM head and the cross-entropy computed only at
    the positions that are trained (the replies), not at every position: the prompt's logits (often half the
    tokens, and with a large vocabulary a large share of the work) are never built. Same value as the model's own
    loss (sum over trained tokens / ``num_items_in_batch``, else their mean). None when ``model`` is not a plain
    causal LM of a known architecture, or is wrapped for distributed training: the caller uses the usual path."""
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
    head, kept = causal.lm_head, hidden[:, :-1][trained]
    if (
        type(head) is torch.nn.Linear
        and head.bias is None
        and not head.weight.requires_grad
        and kept.dtype == head.weight.dtype
        and kept.dtype in (torch.float32, torch.float64)
    ):
        loss = HeadCrossEntropy.apply(kept, head.weight, targets[trained])
    else:
        loss = F.cross_entropy(head(kept).float(), targets[trained], reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else trained.sum().clamp(min=1))


class HeadCrossEntropy(torch.autograd.Function):
    """The summed cross-entropy of the logits ``hidden @ weight.T`` against ``targets``, for a frozen ``weight``:
    the same value and input gradient as ``F.cross_entropy(F.linear(hidden, weight), targets, reduction="sum")``,
    with the [tokens × vocabulary] logits made once and turned into their own gradient in place. The usual path
    builds three more tensors of that size (log-probabilities, and in the backward a one-hot gradient and the
    softmax's), a large share of a step with a 49k vocabulary."""

    @staticmethod
    def forward(ctx, hidden, weight, targets):
        logits = hidden @ weight.t()
        picked = logits.gather(1, targets[:, None])
        top = logits.amax(dim=1, keepdim=True)
        probs = logits.sub_(top).exp_()
        total = probs.sum(dim=1, keepdim=True)
        loss = (total.log() + top - picked).sum()
        probs.div_(total).scatter_add_(1, targets[:, None], torch.full_like(picked, -1.0))  # softmax − one-hot
        ctx.save_for_backward(probs, weight)
        return loss

    @staticmethod
    def backward(ctx, grad):
        probs, weight = ctx.saved_tensors
        return (probs @ weight) * grad, None, None


def length_grouped_order(lengths: list[int], batch: int, seed: int, group_batches: int = GROUP_BATCHES) -> list[int]:
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


class GroupedByLength:
    """A ``Trainer`` mix-in: training batches of similar length (``LengthBatches``) when the dataset has a ``length``
    column."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if dataset is None or "length" not in getattr(dataset, "column_names", ()):
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthBatches(dataset["length"], batch, self.args.seed)


def keep_own_options(optimizer: Any, state_dict: dict) -> dict:
    """An optimizer's ``load_state_dict`` pre-hook: a saved state brings its weights' moments, not its kernel
    options. Without it a run resumed from a checkpoint of the unfused AdamW (Simple LoRA's before 2026-12-01)
    would lose ``fused`` (and its step with an fp16 gradient scaler would fail)."""
    for saved, own in zip(state_dict["param_groups"], optimizer.param_groups, strict=False):
        for key in ("fused", "foreach"):
            if key in own:
                saved[key] = own[key]
    return state_dict


class KeepsOptimizerOptions:
    """A ``Trainer`` mix-in: the optimizer keeps its own kernel options when it loads a checkpoint's state."""

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        optimizer.register_load_state_dict_pre_hook(keep_own_options)
        return optimizer


def pieces(lengths: list[int], budget: int) -> list[list[int]]:
    """A batch's rows (by their lengths), longest first, cut into pieces of at most ``budget`` tokens counted as
    rows × the piece's longest row; a row longer than ``budget`` is a piece of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    cut: list[list[int]] = []
    for i in order:
        if cut and (len(cut[-1]) + 1) * lengths[cut[-1][0]] <= budget:
            cut[-1].append(i)
        else:
            cut.append([i])
    return cut


def computed_tokens(lengths: list[int], width: int, budget: int) -> int:
    """The tokens (padding included) computed for a right-padded batch of ``lengths`` padded to ``width``: in
    pieces when ``piece_inputs`` cuts it, else the whole batch."""
    if budget <= 0 or len(lengths) * width <= budget:
        return len(lengths) * width
    cut = pieces(lengths, budget)
    return len(lengths) * width if len(cut) == 1 else sum(len(rows) * max(1, lengths[rows[0]]) for rows in cut)


def piece_inputs(inputs: dict, budget: int) -> list[dict] | None:
    """``inputs`` (a right-padded batch) as pieces of ``pieces``, each cut to its own longest row; None when the
    batch fits in one piece or is not a right-padded batch of rows."""
    mask = inputs.get("attention_mask")
    if budget <= 0 or mask is None or mask.dim() != 2 or mask.numel() <= budget:
        return None
    if set(inputs) - {"input_ids", "labels", "attention_mask"}:
        return None
    lengths = mask.sum(1)
    if not torch.equal(mask, (torch.arange(mask.shape[1]) < lengths[:, None]).to(mask.dtype)):
        return None  # not right-padded
    lengths = lengths.tolist()
    out = []
    for rows in pieces(lengths, budget):
        index, width = torch.tensor(rows), max(1, lengths[rows[0]])
        out.append({k: v[index, :width] for k, v in inputs.items()})
    return out if len(out) > 1 else None


class SimpleTrainer(KeepsOptimizerOptions, GroupedByLength, Trainer):
    """Trainer whose training loss skips the untrained positions' logits (``completion_loss``), whose batches
    are grouped by length (``LengthBatches``) and, on a CPU, computed in pieces of ``piece_tokens`` tokens
    (``config.cpu_piece_tokens``)."""

    piece_tokens = CPU_PIECE_TOKENS
    _flos_per_token: int | None = None

    def floating_point_ops(self, inputs):
        # The count in the Trainer's logs (6 × tokens × weights): transformers counts the weights by walking every
        # module at every step; they do not change during a run.
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in inputs:
            return super().floating_point_ops(inputs)
        if self._flos_per_token is None:
            self._flos_per_token = super().floating_point_ops({main: inputs[main][:1, :1]})
        return self._flos_per_token * inputs[main].numel()

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Each piece's loss is its trained tokens' sum / the whole batch's count, so the pieces' gradients add up
        # to the batch's. Without that count, off a CPU (bigger products are faster there) or under DDP (each
        # backward would synchronise the gradients) one piece.
        parts = None
        single = self.args.world_size == 1 and not self.is_deepspeed_enabled
        if num_items_in_batch is not None and self.args.device.type == "cpu" and single:
            parts = piece_inputs(inputs, self.piece_tokens)
        if parts is None:
            return super().training_step(model, inputs, num_items_in_batch)
        total = None
        for part in parts:
            loss = super().training_step(model, part, num_items_in_batch)
            total = loss if total is None else total + loss
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # ``model is self.model``: not wrapped for distributed training (unwrap_model would walk every module to
        # look for compiled ones, at every step); under FSDP ``self.model`` is the wrapper itself.
        plain = model is self.model and not self.is_fsdp_enabled
        if not return_outputs and "labels" in inputs and plain:
            loss = completion_loss(model, inputs, num_items_in_batch)
            if loss is not None:
                return loss
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def training_arguments(cfg: TrainConfig, output_dir: str, steps: int, device: str, checkpointing: bool,
                       has_eval: bool) -> TrainingArguments:  # fmt: skip
    """The ``TrainingArguments`` of a run: logging often enough for a curve, checkpoints to resume from, eval ten
    times a run when there is a validation split."""
    return TrainingArguments(**training_settings(cfg, output_dir, steps, device, checkpointing, has_eval))


def training_settings(cfg: TrainConfig, output_dir: str, steps: int, device: str, checkpointing: bool,
                      has_eval: bool) -> dict:  # fmt: skip
    """The keyword arguments of ``training_arguments`` (a preference run passes them to TRL's config)."""
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return dict(
        output_dir=output_dir,
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
        eval_strategy="steps" if has_eval else "no",
        eval_steps=max(1, steps // 10),
        save_strategy="steps",
        save_steps=max(10, steps // 4),
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device != "cuda",
        bf16=bf16,
        fp16=device == "cuda" and not bf16,
        activation_checkpointing=checkpointing,
        gradient_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        optim="adamw_torch_fused",  # one kernel per weight: 0.45 ms a step against 1.98 ms on the demo's LoRA
        # Batches of similar lengths (LengthBatches above): every example is still seen once per epoch, and
        # padding falls from about half the tokens to a few percent.
        train_sampling_strategy="group_by_length",
        length_column_name="length",
    )


class Publisher(Protocol):
    """What ``ProgressCallback`` reports to (a ``TrainingJob``)."""

    def publish(self, **changes: Any) -> None: ...
    def add_log(self, step: int, logs: dict) -> None: ...
    def stop_requested(self) -> bool: ...
    def keep_on_stop(self) -> bool: ...
    def tokens_seen(self) -> int: ...
    def add_samples(self, samples: list[dict]) -> None: ...
    def note(self, **values: Any) -> None: ...


class ProgressCallback(TrainerCallback):
    """Publishes Trainer events (steps, ETA, tokens/s, logged losses) and honours Stop after the current step."""

    def __init__(self, job: Publisher) -> None:
        self.job = job
        self.started = self.last_time = time.monotonic()
        self.last_tokens = 0
        self.rate = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = self.last_time = time.monotonic()
        self.last_tokens = self.job.tokens_seen()
        self.job.publish(total_steps=state.max_steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        now, tokens = time.monotonic(), self.job.tokens_seen()
        elapsed = now - self.started
        rate = (tokens - self.last_tokens) / max(1e-6, now - self.last_time)
        self.rate = 0.7 * self.rate + 0.3 * rate if self.rate else rate
        self.last_time, self.last_tokens = now, tokens
        eta = elapsed / max(1, state.global_step) * max(0, state.max_steps - state.global_step)
        self.job.publish(step=state.global_step, epoch=float(state.epoch or 0.0), elapsed_s=elapsed, eta_s=eta,
                         tokens_per_s=self.rate)  # fmt: skip
        if self.job.stop_requested():
            control.should_training_stop = True
            control.should_save = self.job.keep_on_stop()  # a checkpoint to --resume from
        return control

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.job.stop_requested():  # during gradient accumulation: do not wait for the whole step
            control.should_training_stop = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        self.job.add_log(state.global_step, logs or {})


class ThreadCallback(TrainerCallback):
    """On a CPU, the training's threads follow the cores other processes leave free (``threads.ThreadPolicy``),
    re-checked between steps; the count in use is published as ``threads``. The job calls ``restore()`` once the
    training ends, whether it ended well or not."""

    def __init__(self, job: Publisher, policy: Any = None) -> None:
        from .threads import ThreadPolicy

        self.job, self.policy = job, policy or ThreadPolicy()
        self.before: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.before = torch.get_num_threads()
        self.job.publish(threads=self.policy.start())
        if self.policy.measuring:  # fewer threads than cores then means other programs are busy (the Train tab)
            self.job.note(cores=self.policy.cores)

    def restore(self) -> None:
        """The process's threads as they were before the training (threads started later inherit the count)."""
        if self.before is not None and self.policy.threads != self.before:
            self.policy.apply(self.before)
        self.before = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        before = self.policy.threads
        if self.policy.check() != before:
            self.job.publish(threads=self.policy.threads)


class SampleCallback(TrainerCallback):
    """At the sampler's steps, the model being trained answers the sample rows (``sampling.Sampler``)."""

    def __init__(self, job: Publisher, sampler: Any) -> None:
        self.job, self.sampler = job, sampler

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sampler.begin(state.max_steps)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and not self.job.stop_requested() and self.sampler.due(state.global_step, model):
            self.job.add_samples(self.sampler.answer(model, state.global_step))


def finite(metrics: dict, key: str) -> float | None:
    from .manifest import finite_or_none

    return finite_or_none(metrics.get(key))
