"""Chat with a base model and its adapters: load, activate / hot-swap, stream, compare.

Prompts are rendered by ``prompts.py`` and tokenized by ``masking.prompt_ids``, exactly as in training, with the
prompt format recorded in the adapter's manifest and the tokenizer saved with the adapter. The ``ChatEngine`` holds
one base model and any number of adapters; switching adapters never reloads the base, and an active adapter runs
merged into the base layers (``merge.ExactMerge``), as fast as the bare base.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import adapters, memory
from .context import MAX_MESSAGE_CHARS, Fitted, context_length, fit_to_context
from .errors import ChatError, ModelError
from .merge import ExactMerge

__all__ = ["MAX_MESSAGE_CHARS", "ChatEngine", "Fitted", "GenerationSettings"]

logger = logging.getLogger(__name__)

MAX_NEW_TOKENS = 8192


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def check(self) -> None:
        rules = [
            ("max_new_tokens", 1 <= self.max_new_tokens <= MAX_NEW_TOKENS),
            ("temperature", self.temperature >= 0),
            ("top_p", 0 < self.top_p <= 1),
            ("repetition_penalty", self.repetition_penalty > 0),
        ]
        for setting, ok in rules:
            if not ok:
                raise ChatError("bad_generation_setting", setting=setting, value=str(getattr(self, setting)))


def load_model(base: str | Path, adapter: str | Path | None = None, trust_remote_code: bool = False) -> Any:
    """The base model for inference (float32 on CPU, 4-bit on CUDA), with ``adapter`` loaded if given."""
    from .models import check_model_dir, load_for_inference

    base = check_model_dir(base)
    model = load_for_inference(base, trust_remote_code)
    if adapter is None:
        return model
    with memory.paused():
        from peft import PeftModel

    adapter = Path(adapter)
    adapters.verify_adapter(adapter, base_dir=base)
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)


def prompt_format_of(adapter: str | Path | None) -> str | None:
    """The prompt format an adapter was trained with (None: follow the tokenizer)."""
    if adapter is None or not adapters.has_manifest(adapter):
        return None
    return adapters.read_manifest(adapter).prompt_format


def tokenizer_for(base: str | Path, adapter: str | Path | None) -> Any:
    """The adapter's own tokenizer (saved with it, chat template included) when it has one, else the base's."""
    from .models import load_tokenizer

    if adapter is not None and not Path(adapter).is_dir():
        raise ModelError("model_missing", path=str(adapter))
    if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file():
        return load_tokenizer(adapter)
    return load_tokenizer(base)


def _stop_ids(tokenizer: Any) -> list[int]:
    """EOS and end-of-turn tokens: a reply stops at whichever comes first."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"):
        if token in vocab:
            ids.add(vocab[token])
    return sorted(i for i in ids if i is not None)


def _generate_kwargs(tokenizer: Any, settings: GenerationSettings) -> dict[str, Any]:
    from .masking import pad_id_of

    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "eos_token_id": _stop_ids(tokenizer),
        "pad_token_id": pad_id_of(tokenizer),
        "repetition_penalty": settings.repetition_penalty,
        "use_cache": True,
    }
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:  # greedy: keep sampling defaults from the model's generation_config out
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


# What a byte-level tokenizer decodes a character cut short by ``max_new_tokens`` to (one per byte; a character has
# at most 4): never shown as the reply's end.
PARTIAL = "\ufffd"
PARTIAL_MAX = 3


def _cut_tail(text: str) -> tuple[str, str]:
    """``text`` split before the replacement characters that may be a character cut short at its end."""
    tail = min(len(text) - len(text.rstrip(PARTIAL)), PARTIAL_MAX)
    return text[: len(text) - tail], text[len(text) - tail :]


def reply_pieces(pieces: Iterable[str]) -> Iterator[str]:
    """The streamer's ``pieces`` as the reply shows them: without the template's leading whitespace, and without a
    last character whose bytes the token limit cut short (a replacement character shows only when text follows,
    or when the reply has nothing else)."""
    started, held, said = False, "", False
    for piece in pieces:
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        whole, held = _cut_tail(held + piece)
        if whole:
            said = True
            yield whole
    if held and not said:
        yield held


def generate(
    model: Any,
    tokenizer: Any,
    messages: list[dict],
    settings: GenerationSettings | None = None,
    style: str | None = None,
    streamer: Any = None,
    stopping_criteria: Any = None,
) -> str:
    """The reply to ``messages`` (the last one a user turn)."""
    import torch

    from .masking import prompt_ids

    settings = settings or GenerationSettings()
    ids = prompt_ids(tokenizer, messages, style)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            streamer=streamer,
            stopping_criteria=stopping_criteria,
            **_generate_kwargs(tokenizer, settings),
        )
    text = tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True).strip()
    return _cut_tail(text)[0] or text


# Batches of replies: at most this many rows, and rows x (longest prompt + new tokens) at most this many tokens (the
# key-value cache grows with it). A decoding step reads every weight once whatever the rows, so on a CPU a batch of
# 40 replies takes little more than one of 20 (bench/evaluation.py; BENCHMARKS.md, "The evaluation card").
BATCH_ROWS = 64
BATCH_TOKENS = 8192
REPLAY_ROWS = 32  # dataset rows a replay answers at a time


def reply_batches(lengths: list[int], new_tokens: int, rows: int = BATCH_ROWS, tokens: int = BATCH_TOKENS
                  ) -> list[list[int]]:  # fmt: skip
    """The prompts' indices in batches: sorted by length (little padding), each batch within ``rows`` rows and
    ``tokens`` tokens (rows x (its longest prompt + ``new_tokens``)), a prompt longer than that alone. Rows are
    shared evenly (70 rows: 35 and 35, not 64 and 6: a batch's decoding steps cost about the same whatever its
    rows)."""
    rows = math.ceil(len(lengths) / math.ceil(len(lengths) / rows)) if lengths else rows
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        batch = batches[-1] if batches else None
        if batch is None or len(batch) >= rows or (len(batch) + 1) * (lengths[i] + new_tokens) > tokens:
            batches.append([i])
        else:
            batch.append(i)
    return batches


BASE_ROW = "__base__"  # PEFT's name, in a batch of several adapters, for a row answered by the base model alone


def peft_name(name: str) -> str:
    """The name PEFT knows an adapter folder by: its folder name, each '.' (which PEFT refuses in an adapter's name,
    a module name to torch: "v1.2", "llama-3.1-lora") as a one-dot leader, U+2024, which no folder name the app
    makes contains."""
    return name.replace(".", "\u2024")


UNMIXED_LAYERS = ("ParamWrapper", "MultiheadAttention")  # PEFT's LoRA layers that refuse batches of several adapters


def _replies(model: Any, tokenizer: Any, prompts: list[list[int]], budgets: list[int], settings: GenerationSettings,
             adapters: list[str] | None = None, each: Callable[[], AbstractContextManager] | None = None,
             stop: threading.Event | None = None, context: int | None = None) -> list[str] | None:  # fmt: skip
    """The replies to many prompts (token ids), in the order given, computed in batches of similar lengths
    (``reply_batches``; prompts padded on the left, which the model's attention mask and positions skip): for
    scoring many rows, several times faster than one by one, and the same greedy answers. Each prompt has its own
    new-token budget, and prompts of different budgets share a batch, each row ending at its own (a decoding step
    reads every weight once for all its rows, so one batch of 36 rows costs much less than batches of 12 and 24
    one after the other: BENCHMARKS.md, "The evaluation card"); rows that have ended leave the batch
    (``_decode``); a prompt whose length and the largest budget would pass ``context`` (the model's,
    ``context_length``) shares batches only with prompts of its own budget.
    ``adapters``: the adapter that answers each prompt (``BASE_ROW``: none), as PEFT's batches of several adapters
    compute them (each row's LoRA update only on that row); ``each``: a context entered around every batch (the
    engine's lock: other sessions answer between batches). None when ``stop`` was set between batches (or between
    a batch's stretches)."""
    import torch

    from .masking import pad_id_of

    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    replies: list[str] = [""] * len(prompts)
    top = max(budgets, default=0)
    groups: dict[int, list[int]] = {}
    for i, budget in enumerate(budgets):
        shared = context is None or len(prompts[i]) + top <= context
        groups.setdefault(top if shared else budget, []).append(i)
    leave, share = _stretches(model)
    for most, members in groups.items():
        for cut in reply_batches([len(prompts[i]) for i in members], most):
            if stop is not None and stop.is_set():
                return None
            batch = [members[j] for j in cut]
            width = max(len(prompts[i]) for i in batch)
            begin = _shared_beginning([prompts[i] for i in batch]) if share else 0
            ids = torch.tensor([prompts[i][:begin] + [pad] * (width - len(prompts[i])) + prompts[i][begin:]
                                for i in batch], device=device)  # fmt: skip
            mask = torch.tensor([[1] * begin + [0] * (width - len(prompts[i])) + [1] * (len(prompts[i]) - begin)
                                 for i in batch], device=device)  # fmt: skip
            names = [adapters[i] for i in batch] if adapters is not None else None
            with each() if each is not None else nullcontext(), torch.inference_mode():
                cache = _prefilled(model, prompts[batch[0]][:begin], names or [None] * len(batch)) if begin else None
                rows = _decode(model, ids, mask, _generate_kwargs(tokenizer, settings), [budgets[i] for i in batch],
                               names, stop, cache, leave)  # fmt: skip
            if rows is None:
                return None
            for i, row in zip(batch, rows, strict=True):
                text = tokenizer.decode(row[: budgets[i]], skip_special_tokens=True).strip()
                replies[i] = _cut_tail(text)[0] or text
    return replies


# Decoding steps between looks for rows that have ended (their end-of-turn token, or their own budget): those leave
# the batch and its cache, so the steps after compute only the rows still answering. 0: every row to the batch's end.
LEAVE_EVERY = 16


def _decode(model: Any, ids: Any, mask: Any, kwargs: dict[str, Any], budgets: list[int], names: list[str] | None,
            stop: threading.Event | None = None, cache: Any = None,
            leave: bool = True) -> list[Any] | None:  # fmt: skip
    """Each row's new tokens (``generate`` with ``kwargs``; a row may hold pad tokens after its end), decoded
    ``LEAVE_EVERY`` steps at a time: after each such stretch the rows that have ended leave the batch, the rest go on
    from the same cache (a batch's answers then cost about what its rows' own lengths need, not its longest row's
    for every row; the same greedy answers: BENCHMARKS.md, "The evaluation card"). Without ``leave`` (``_stretches``)
    the batch is decoded in one stretch. ``names``: each row's adapter (a batch of several adapters); ``cache``: the
    prompts' shared beginning already computed (``_prefilled``). None when ``stop`` is set between stretches."""
    import torch

    ends = kwargs["eos_token_id"]
    ends = torch.tensor(ends if isinstance(ends, list) else [ends], device=ids.device)
    rows: list[Any] = [None] * len(budgets)
    first = ids, mask
    alive, done, whole = list(range(len(budgets))), 0, not leave or LEAVE_EVERY <= 0
    while alive:
        if stop is not None and stop.is_set():
            return None
        left = [budgets[i] - done for i in alive]
        stretch = max(left) if whole else min(LEAVE_EVERY, max(left))
        step = {**kwargs, "max_new_tokens": stretch, "return_dict_in_generate": True}
        if min(left) < stretch:
            step["stopping_criteria"] = _row_budgets(ids.shape[1], left, ids.device)
        if names is not None:
            step["adapter_names"] = [names[i] for i in alive]
        if cache is not None:
            step["past_key_values"] = cache
        out = model.generate(input_ids=ids, attention_mask=mask, **step)
        new = out.sequences[:, ids.shape[1] :]
        done += new.shape[1]
        ended = torch.isin(new, ends).any(dim=1).tolist()
        going = []
        for k, i in enumerate(alive):
            if ended[k] or done >= budgets[i] or new.shape[1] < stretch:  # generate stops once every row has ended
                rows[i] = out.sequences[k, out.sequences.shape[1] - done :]
            else:
                going.append(k)
        if not going:
            break
        cache = out.past_key_values
        if not _can_leave(cache):  # (not foreseen by _stretches) the whole batch again, in one stretch
            (ids, mask), alive, done, cache, whole = first, list(range(len(budgets))), 0, None, True
            continue
        ids = out.sequences
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], new.shape[1])], dim=1)
        if len(going) < len(alive):
            index = torch.tensor(going, device=ids.device)
            ids, mask = ids[index], mask[index]
            cache.batch_select_indices(index)
            alive = [alive[k] for k in going]
    return rows


# Prompts that begin alike (a chat template's default system prompt, a dataset's own) have their shared beginning
# computed once per adapter rather than once per row, when it is at least this many tokens.
SHARED_PREFIX_MIN = 8
# Generation settings a model's generation_config may carry that count from the start of each ``generate`` call:
# with them, a batch decoded in stretches would answer otherwise than in one call.
_PER_CALL = ("forced_eos_token_id", "min_new_tokens", "begin_suppress_tokens", "exponential_decay_length_penalty",
             "max_time")  # fmt: skip


def _stretches(model: Any) -> tuple[bool, bool]:
    """Whether ``model``'s batches may be decoded in stretches that rows leave (``_decode``), and whether their
    prompts' shared beginning may be computed once (``_prefilled``), decided before any batch from what ``generate``
    would do: greedy search or sampling, one step at a time (not beams, nor assisted or constrained decoding from
    its generation config), a ``DynamicCache`` of key/value layers (not a model with a cache of its own, such as
    Mamba's, nor a ``cache_implementation`` from its generation config, nor quantized or linear-attention layers, nor
    a model without one), and no generation setting counted per call (``_PER_CALL``, a ``min_length``). A shared
    beginning also needs plain layers (not a sliding window's) and a forward that takes ``position_ids`` and
    ``logits_to_keep``."""
    import copy
    import inspect

    from transformers.cache_utils import DynamicCache, DynamicLayer

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "generation_config", None)
    if config is None or getattr(config, "cache_implementation", None) is not None:
        return False, False
    if any(getattr(config, name, None) is not None for name in _PER_CALL) or (getattr(config, "min_length", 0) or 0):
        return False, False
    several = (getattr(config, "num_return_sequences", 1) or 1) > 1
    if several or getattr(config, "guidance_scale", None) not in (None, 1):
        return False, False
    try:
        greedy = copy.deepcopy(config)
        greedy.do_sample, greedy.top_k = False, None  # what _generate_kwargs asks; sampling steps the same way
        if greedy.get_generation_mode() != "greedy_search":
            return False, False
    except Exception:  # a generation config of its own kind: as generate alone
        return False, False
    supports = getattr(base, "_supports_default_dynamic_cache", None)
    if supports is None or not supports() or "mamba" in type(base).__name__.lower():
        return False, False
    try:
        cache = DynamicCache(config=base.config.get_text_config(decoder=True))
    except Exception:  # a configuration the cache cannot read: as generate alone
        return False, False
    takes = inspect.signature(base.forward).parameters
    leave = _can_leave(cache) and "past_key_values" in takes
    share = leave and all(type(layer) is DynamicLayer for layer in cache.layers)
    return leave, share and "position_ids" in takes and "logits_to_keep" in takes


def _shared_beginning(prompts: list[list[int]]) -> int:
    """How many first tokens ``prompts`` share (every prompt keeping at least one of its own), or 0 when that is
    fewer than ``SHARED_PREFIX_MIN`` or there is one prompt."""
    import os

    shared = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
    return shared if len(prompts) > 1 and shared >= SHARED_PREFIX_MIN else 0


def _prefilled(model: Any, begin: list[int], names: list[str | None]) -> Any:
    """The key/value cache of a batch whose rows all begin with ``begin``, computed once for each adapter the rows
    have (``names``: one per row; None each for a batch of one adapter) and repeated for each row. ``_replies`` puts
    a row's padding after that beginning, not before it (the attention mask hides it; positions count the unmasked
    tokens): every row then has the beginning at the same columns and positions, and ``generate`` computes only the
    rest of each prompt."""
    import torch

    kinds = sorted(set(names), key=str)
    device = next(model.parameters()).device
    extra = {"adapter_names": kinds} if kinds != [None] else {}
    ids = torch.tensor([begin] * len(kinds), device=device)
    positions = torch.arange(len(begin), device=device).expand(len(kinds), -1)  # as generate counts them
    cache = model(input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=1, **extra).past_key_values
    cache.batch_select_indices(torch.tensor([kinds.index(n) for n in names], device=device))
    return cache


def _can_leave(cache: Any) -> bool:
    """Whether rows can leave ``cache`` (``batch_select_indices``): a ``DynamicCache`` of plain key/value layers;
    not quantized layers, nor a linear attention's state, which keep more than the keys and values it selects."""
    from transformers.cache_utils import DynamicCache, DynamicIndexedLayer, DynamicLayer, DynamicSlidingWindowLayer

    plain = (DynamicLayer, DynamicSlidingWindowLayer, DynamicIndexedLayer)
    return type(cache) is DynamicCache and all(type(layer) in plain for layer in cache.layers)


def _row_budgets(width: int, budgets: list[int], device: Any) -> Any:
    """A stopping criterion for ``generate``: each row of a batch whose prompts are ``width`` tokens (padded) is
    done after its own number of new tokens (``generate`` then pads it, and stops when every row is done)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    limits = torch.tensor(budgets, device=device)

    class RowBudgets(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return input_ids.shape[1] - width >= limits

    return StoppingCriteriaList([RowBudgets()])


def check_adapter_base(adapter: str | Path, base: str | Path) -> None:
    """Refuse an adapter that is not valid or was trained on another base model than ``base``, naming both."""
    adapters.verify_adapter(adapter)
    adapters.check_base(adapter, base)


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    path: str
    style: str | None  # prompt format from the manifest
    external: bool


ACTIVE: Any = object()  # "the engine's active adapter", where a call may also name one, or None for the pure base


class ChatEngine:
    """One base model and its adapters, shared by every chat session of the process.

    ``activate`` loads an adapter once and switches to it with PEFT's adapter API; ``deactivate`` returns to the
    pure base (generation then runs with the adapters disabled, which is exactly the base model). One reply is
    generated at a time, and the model is never changed while a reply is being generated.
    """

    def __init__(self) -> None:
        self.base: Path | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.adapters: dict[str, LoadedAdapter] = {}
        self.active: str | None = None
        self._made: int | None = None  # memory.epoch() when the model was loaded
        # Generation with an adapter runs on its weights merged into the base layers (as fast as the bare base).
        self._merge = ExactMerge()
        # A plain Lock, not an RLock: a streamed reply may be resumed by another worker thread than the one that
        # started it, and must still be able to release it.
        self._busy = threading.Lock()

    def _hold(self, timeout: float = 600.0, stop: threading.Event | None = None) -> bool:
        """Wait for the model (one reply at a time). False when ``stop`` was set while waiting."""
        deadline = time.monotonic() + timeout
        while not self._busy.acquire(timeout=0.05):
            if stop is not None and stop.is_set():
                return False
            if time.monotonic() > deadline:
                raise ChatError("chat_busy")
        return True

    @property
    def busy(self) -> bool:
        """Whether a reply is being generated (or the model changed) right now."""
        return self._busy.locked()

    # --- loading ---

    def load_base(self, base: str | Path, trust_remote_code: bool = False, during_training: bool = False) -> None:
        """Load ``base`` (once). On a GPU this is refused while a training runs, unless the caller is that training
        (``during_training``: its own evaluation, after its model is freed)."""
        from .models import check_model_dir, load_for_inference, load_tokenizer

        base = check_model_dir(base)
        if self.base == base and self.model is not None:
            return
        if not during_training:
            self._refuse_during_gpu_training()
        self._hold()
        try:
            self._unload()
            self._made = memory.epoch()
            self.model = load_for_inference(base, trust_remote_code)
            self.tokenizer = load_tokenizer(base, trust_remote_code=trust_remote_code)
            self.base = base
            logger.info("chat base model: %s", base)
        finally:
            self._busy.release()

    def unload(self) -> None:
        self._hold()
        try:
            self._unload()
        finally:
            self._busy.release()

    def _unload(self) -> None:
        loaded = self.model is not None
        self._unmerge()
        self.model = self.tokenizer = self.base = None
        self.adapters.clear()
        self.active = None
        if loaded:  # the model's memory back before the next one is loaded
            memory.release(self._made)

    def _refuse_during_gpu_training(self) -> None:
        from .models import device_kind
        from .runs import active_job

        job = active_job()
        if job is not None and device_kind() == "cuda":
            raise ChatError("busy_training", task=job.config.task)

    def activate(self, adapter: str | Path) -> LoadedAdapter:
        """Load ``adapter`` (once) onto the loaded base and make it the one used when a call names none."""
        loaded = self.load_adapter(adapter)
        self.active = loaded.name
        return loaded

    def load_adapter(self, adapter: str | Path) -> LoadedAdapter:
        """Load ``adapter`` onto the loaded base, once (checked against it first); the active one is kept."""
        path = Path(adapter).resolve()
        if self.model is None or self.base is None:
            raise ChatError("no_base_loaded")
        known = self.adapters.get(path.name)
        if known is not None and known.path == str(path):
            return known
        check_adapter_base(path, self.base)
        self._hold()
        try:
            self._unmerge()  # PEFT would "unmerge" by subtracting when the active adapter changes
            if path.name in self.adapters:  # another folder of that name (deleted and trained again): reload
                self._forget(path.name)
            self._load_adapter(path)
            if self.active is not None:
                self.model.set_adapter(peft_name(self.active))
            return self.adapters[path.name]
        finally:
            self._busy.release()

    def _load_adapter(self, path: Path) -> None:
        with memory.paused():
            from peft import PeftModel

        name = path.name
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=peft_name(name), is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=peft_name(name))
        except (RuntimeError, ValueError, KeyError) as exc:  # shapes or module names that do not fit
            raise ChatError("adapter_does_not_fit", adapter=name, base=self.base.name, detail=str(exc)) from exc
        self.model.eval()
        external = not adapters.has_manifest(path)
        self.adapters[name] = LoadedAdapter(name, str(path), prompt_format_of(path), external)

    def deactivate(self) -> None:
        self._hold()
        self.active = None
        self._busy.release()

    def remove(self, name: str) -> None:
        """Forget a loaded adapter (e.g. before its folder is deleted)."""
        self._hold()
        try:
            self._unmerge()
            self._forget(name)
        finally:
            self._busy.release()

    def _forget(self, name: str) -> None:
        if name in self.adapters:
            if len(self.adapters) == 1:
                # PEFT cannot run a PeftModel left without adapters (disable_adapter looks the deleted one up):
                # take the LoRA layers out and keep the plain base model.
                self.model = self.model.unload()
                self.model.eval()
            else:
                self.model.delete_adapter(peft_name(name))
            del self.adapters[name]
        if self.active == name:
            self.active = None

    # --- generation ---

    @property
    def style(self) -> str | None:
        return self._style(ACTIVE)

    def _adapter(self, adapter: str | None | object) -> str | None:
        """The adapter a call names (None: the pure base), or the active one for ``ACTIVE``."""
        name = self.active if adapter is ACTIVE else adapter
        if name is not None and name not in self.adapters:
            raise ChatError("adapter_not_loaded", name=str(name))
        return name  # type: ignore[return-value]

    def _style(self, adapter: str | None | object) -> str | None:
        name = self._adapter(adapter)
        return self.adapters[name].style if name else None

    def prompt_text(self, messages: list[dict], adapter: str | None | object = ACTIVE) -> str:
        """The exact text the model is given for ``messages`` (the same rendering as in training)."""
        from .prompts import render

        self._need_model()
        rendered = render(self.tokenizer, messages, add_generation_prompt=True, style=self._style(adapter))
        return rendered.text(self.tokenizer.eos_token or "")

    def _need_model(self) -> None:
        if self.model is None:
            raise ChatError("no_base_loaded")

    def generate(self, messages: list[dict], settings: GenerationSettings | None = None,
                 adapter: str | None | object = ACTIVE, stop: threading.Event | None = None) -> str:  # fmt: skip
        return "".join(self.stream(messages, settings, adapter, stop))

    def fit(self, messages: list[dict], settings: GenerationSettings, adapter: str | None | object = ACTIVE) -> Fitted:
        """``messages`` made to fit the loaded model's context (see ``fit_to_context``)."""
        self._need_model()
        context = context_length(self.model, self.tokenizer)
        return fit_to_context(self.tokenizer, messages, self._style(adapter), context, settings.max_new_tokens)

    def _fitted(self, messages: list[dict], settings: GenerationSettings,
                adapter: str | None | object = ACTIVE) -> tuple[list[dict], GenerationSettings]:  # fmt: skip
        settings.check()
        fitted = self.fit(messages, settings, adapter)
        return fitted.messages, replace(settings, max_new_tokens=fitted.max_new_tokens)

    def stream(self, messages: list[dict], settings: GenerationSettings | None = None,
               adapter: Any = ACTIVE, stop: threading.Event | None = None) -> Iterator[str]:  # fmt: skip
        """Yield the reply piece by piece as it is generated, with ``adapter`` (a loaded adapter's name, None for
        the pure base, by default the active one). The conversation is first made to fit the model's context (its
        oldest turns dropped). Setting ``stop`` ends the wait for the model, or the reply within one token."""
        name = self._adapter(adapter)
        messages, settings = self._fitted(messages, settings or GenerationSettings(), name)
        if not self._hold(stop=stop):
            return
        try:
            yield from self._stream(messages, settings, name, stop)
        finally:
            self._busy.release()

    def _stream(self, messages: list[dict], settings: GenerationSettings, adapter: str | None,
                stop: threading.Event | None = None) -> Iterator[str]:  # fmt: skip
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancelled = threading.Event()

        class Cancel(StoppingCriteria):  # the reader went away, or its session pressed Stop
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set() or (stop is not None and stop.is_set())

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        error: list[BaseException] = []
        style = self.adapters[adapter].style if adapter else None

        def work() -> None:
            try:
                with self._adapter_mode(adapter):
                    generate(self.model, self.tokenizer, messages, settings, style, streamer,
                             stopping_criteria=StoppingCriteriaList([Cancel()]))  # fmt: skip
            except BaseException as exc:  # re-raised in the reader's thread below
                error.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, name="chat-generate", daemon=True)
        thread.start()
        try:
            yield from reply_pieces(streamer)
        finally:
            cancelled.set()
            thread.join()
        if error:
            raise error[0]

    def _adapter_mode(self, adapter: str | None) -> Any:
        """``adapter`` switched on, or every adapter disabled (exactly the base model) when it is None."""

        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return nullcontext()
        if adapter is None:
            self._unmerge()
            return self.model.disable_adapter()
        known_as = peft_name(adapter)
        if self._merge.merged != known_as:
            self._unmerge()
            self.model.set_adapter(known_as)
            self._merge.merge(self.model, known_as)
        return nullcontext()

    @property
    def merged(self) -> str | None:
        """The adapter merged into the base layers now, if any."""
        merged = self._merge.merged
        return next((name for name in self.adapters if peft_name(name) == merged), merged)

    def _unmerge(self) -> None:
        if self.model is not None:
            self._merge.unmerge(self.model)

    def compare(self, messages: list[dict], settings: GenerationSettings | None = None,
                adapter: str | None | object = ACTIVE) -> dict[str, str]:  # fmt: skip
        """The same prompt answered by the base (adapters disabled) and by ``adapter`` (by default the active
        one), same settings."""
        name = self._adapter(adapter)
        if name is None:
            raise ChatError("no_active_adapter")
        messages, settings = self._fitted(messages, settings or GenerationSettings(), name)
        self._hold()
        try:
            adapter_reply = "".join(self._stream(messages, settings, name))
            base_reply = "".join(self._stream(messages, settings, None))
        finally:
            self._busy.release()
        return {"base": base_reply, "adapter": adapter_reply}

    def answer_all(self, conversations: list[list[dict]], settings: GenerationSettings,
                   adapter: str | None | object = ACTIVE, stop: threading.Event | None = None,
                   budgets: list[int] | None = None) -> list[str] | None:  # fmt: skip
        """Many conversations answered by ``adapter`` (None: the pure base), in batches (``_replies``), each first
        made to fit the model's context (its own reply budget, as one by one). ``budgets``: each conversation's
        own ``max_new_tokens`` instead of the settings'. None when ``stop`` was set between two batches."""
        name = self._adapter(adapter)
        return self._answer([(c, name) for c in conversations], settings, stop, budgets=budgets)

    def answer_both(self, conversations: list[list[dict]], settings: GenerationSettings,
                    adapter: str | None | object = ACTIVE, stop: threading.Event | None = None,
                    budgets: list[int] | None = None) -> tuple[list[str], list[str]] | None:  # fmt: skip
        """Many conversations answered by the base and by ``adapter``, in the order given: (base, adapter). In the
        same batches where PEFT can mix the two (``_batches_both``; the adapter unmerged, each row's update only
        on its own rows): a decoding step reads every weight once for all the rows, so on a CPU this takes about
        0.6-0.8x two passes (BENCHMARKS.md); otherwise in two passes. ``budgets`` as in ``answer_all``. None when
        ``stop`` was set between batches."""
        name = self._adapter(adapter)
        if name is None:
            raise ChatError("no_active_adapter")
        asked = [(c, n) for n in (None, name) for c in conversations]
        both = budgets * 2 if budgets is not None else None
        if self._batches_both(name):
            replies = self._answer(asked, settings, stop, mixed=name, budgets=both)
        else:
            half = len(conversations)
            base = self._answer(asked[:half], settings, stop, budgets=budgets)
            tuned = self._answer(asked[half:], settings, stop, budgets=budgets) if base is not None else None
            replies = base + tuned if base is not None and tuned is not None else None
        return None if replies is None else (replies[: len(conversations)], replies[len(conversations) :])

    def _answer(self, asked: list[tuple[list[dict], str | None]], settings: GenerationSettings,
                stop: threading.Event | None, mixed: str | None = None,
                budgets: list[int] | None = None) -> list[str] | None:  # fmt: skip
        """Conversations, each with the adapter that answers it (None: the base), in batches; all with one
        adapter unless ``mixed`` names the adapter that shares the batches with the base. ``budgets``: each
        conversation's ``max_new_tokens`` (default: the settings')."""
        from .masking import prompt_ids

        if budgets is not None and len(budgets) != len(asked):
            raise ValueError(f"{len(budgets)} budgets for {len(asked)} conversations")
        own = budgets or [settings.max_new_tokens] * len(asked)
        fitted = [self._fitted(c, replace(settings, max_new_tokens=b), name)
                  for (c, name), b in zip(asked, own, strict=True)]  # fmt: skip
        prompts = [prompt_ids(self.tokenizer, m, self._style(name))
                   for (m, _), (_, name) in zip(fitted, asked, strict=True)]  # fmt: skip
        budgets = [s.max_new_tokens for _, s in fitted]
        names = [BASE_ROW if name is None else peft_name(name) for _, name in asked] if mixed else None
        adapter = mixed or (asked[0][1] if asked else None)

        @contextmanager
        def held() -> Iterator[None]:  # the model, for one batch
            self._hold()
            try:
                if mixed:  # each row gets its own adapter's update; merged weights would give it to every row
                    self._unmerge()
                    self.model.set_adapter(peft_name(mixed))
                    yield
                else:
                    with self._adapter_mode(adapter):
                        yield
            finally:
                self._busy.release()

        context = context_length(self.model, self.tokenizer)
        return _replies(self.model, self.tokenizer, prompts, budgets, settings, names, held, stop, context)

    def _batches_both(self, name: str) -> bool:
        """Whether base and ``name`` can answer in one batch: a LoRA adapter (not DoRA) of a PEFT model on layers
        whose batches PEFT can mix (not LoRA on parameters or on ``nn.MultiheadAttention``)."""
        from peft import PeftModel

        name = peft_name(name)
        config = self.model.peft_config.get(name) if isinstance(self.model, PeftModel) else None
        if config is None or config.peft_type != "LORA" or config.use_dora:
            return False
        return not any(type(m).__name__ in UNMIXED_LAYERS and name in getattr(m, "lora_A", {})
                       for m in self.model.modules())  # fmt: skip

    def replay(self, records: list[Any], settings: GenerationSettings | None = None,
               adapter: str | None | object = ACTIVE, stop: threading.Event | None = None) -> list[dict]:  # fmt: skip
        """Dataset rows answered by base and adapter next to their reference answers, ``REPLAY_ROWS`` rows at a
        time in batches (``answer_both``; the chunks done before ``stop`` was set, when it is)."""
        name = self._adapter(adapter)
        if name is None:
            raise ChatError("no_active_adapter")
        asked = []
        for record in records:
            messages = [{"role": m.role, "content": m.content} for m in record.messages]
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            asked.append((record.row, messages[:last], messages[last - 1]["content"], messages[last]["content"]))
        results = []
        for start in range(0, len(asked), REPLAY_ROWS):
            chunk = asked[start : start + REPLAY_ROWS]
            answers = self.answer_both([a[1] for a in chunk], settings or GenerationSettings(), name, stop)
            if answers is None:
                break
            base, tuned = answers
            results += [{"row": row, "prompt": prompt, "reference": reference, "base": b, "adapter": a}
                        for (row, _, prompt, reference), b, a in zip(chunk, base, tuned, strict=True)]  # fmt: skip
        return results

    def status(self) -> dict:
        return {"base": str(self.base) if self.base else None, "active": self.active, "loaded": sorted(self.adapters)}
