"""The evaluation card's replies: the time to answer its prompts with the base model and with the adapter, three
ways, alternating, several runs each, medians, against the first way measured in the same run:

- before (the peer): each side in its own pass, batches of 8 prompts in the order given, every row decoded to
  its batch's end, every prompt computed whole;
- each side in its own pass, batches of similar prompt lengths (``ChatEngine.answer_all``, up to 64 rows);
- Simple LoRA: both sides in the same batches (``ChatEngine.answer_both``, PEFT's batches of several adapters).

Two workloads, as the card has them: the forgetting probe (12 prompts, 48 new tokens) and the first 20 rows of the
bundled sample (the default ``eval_rows``, new tokens a little past the longest reference). Then the card's whole
set, the 20 rows and the probe each with its own budget, four ways: both sides in one pass for the rows, then for
the probe (the card until 2026-12-02, the peer); rows and probe in the same batches, each row ending at its own
budget (``answer_both(..., budgets=...)``), every row decoded to its batch's end; the same, and the rows that have
ended (their end-of-turn token or budget) leave the batch every ``LEAVE_EVERY`` steps (``chat._decode``): on a
real model, whose answers end at many lengths, the later steps compute fewer rows; and Simple LoRA: the same, and
the beginning the prompts share (a chat template's default system prompt) computed once per adapter
(``chat._prefilled``). Every way must give the same greedy replies; the script says so. ``--rows`` and
``--prompts`` take fewer of the sample's rows and of the probe's prompts (a quicker check, not the card's
workload).

    .venv/bin/python bench/evaluation.py [--base DIR] [--runs 3] [--rows 20] [--prompts 12]

With --float64 the model computes in float64: the check that every way gives the same replies then does not
depend on how float32 rounds near-ties (``tests/test_bench.py`` runs it so on the demo model, a random model
whose tokens are often nearly tied); the timings are float32's only without it.

Without --base it uses the bench fixture's model (bench/fixture.py) when present, else a fresh demo model. The
adapter is LoRA r=16 on q,k,v,o with random weights (bench/chat.py's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat import choose_base, make_adapter  # noqa: E402 (bench/chat.py, beside this script)


@contextmanager
def batches_as_before(leave: bool = False):
    """The batches until 2026-12-02: every row decoded to its batch's end (``chat.LEAVE_EVERY`` 0) unless ``leave``,
    and every prompt computed whole (no shared beginning: ``chat.SHARED_PREFIX_MIN`` out of reach)."""
    from lora_core import chat

    kept = chat.LEAVE_EVERY, chat.SHARED_PREFIX_MIN
    chat.LEAVE_EVERY, chat.SHARED_PREFIX_MIN = (kept[0] if leave else 0), 1 << 30
    try:
        yield
    finally:
        chat.LEAVE_EVERY, chat.SHARED_PREFIX_MIN = kept


def before(engine, conversations, settings) -> tuple[list[str], list[str]]:
    with batches_as_before():
        return passes_of_8(engine, conversations, settings)


def passes_of_8(engine, conversations, settings) -> tuple[list[str], list[str]]:
    sides = []
    for adapter in (None, engine.active):
        replies = []
        for start in range(0, len(conversations), 8):
            replies += engine.answer_all(conversations[start : start + 8], settings, adapter)
        sides.append(replies)
    return sides[0], sides[1]


def sorted_sides(engine, conversations, settings) -> tuple[list[str], list[str]]:
    return engine.answer_all(conversations, settings, None), engine.answer_all(conversations, settings)


def both(engine, conversations, settings) -> tuple[list[str], list[str]]:
    return engine.answer_both(conversations, settings)


WAYS = {
    "before: a pass per side, batches of 8 in order": before,
    "a pass per side, batches by length": sorted_sides,
    "Simple LoRA: both sides in one pass": both,
}


def rows_then_probe(engine, parts) -> tuple[list[str], list[str]]:
    with batches_as_before():
        answers = [engine.answer_both(conversations, settings) for conversations, settings in parts]
    return answers[0][0] + answers[1][0], answers[0][1] + answers[1][1]


def rows_and_probe_to_the_end(engine, parts) -> tuple[list[str], list[str]]:
    with batches_as_before():
        return rows_and_probe(engine, parts)


def rows_and_probe_leaving(engine, parts) -> tuple[list[str], list[str]]:
    with batches_as_before(leave=True):
        return rows_and_probe(engine, parts)


def rows_and_probe(engine, parts) -> tuple[list[str], list[str]]:
    from lora_core.chat import GenerationSettings

    conversations = [c for part, _ in parts for c in part]
    budgets = [settings.max_new_tokens for part, settings in parts for _ in part]
    return engine.answer_both(conversations, GenerationSettings(max_new_tokens=max(budgets)), budgets=budgets)


CARD_WAYS = {
    "both sides in one pass, the rows then the probe": rows_then_probe,
    "rows and probe in the same batches, each row to its batch's end": rows_and_probe_to_the_end,
    "the same, ended rows leave the batch": rows_and_probe_leaving,
    "Simple LoRA: the same, and the prompts' shared beginning computed once": rows_and_probe,
}


def table(title: str, times: dict[str, list[float]], replies: dict[str, tuple]) -> None:
    peer = statistics.median(next(iter(times.values())))
    print(f"\n{title}")
    print("| way | s (median) | min | max | ratio to the first |\n|---|---:|---:|---:|---:|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {median:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | {peer / median:.2f}x |")
    same = len({repr(r) for r in replies.values()}) == 1
    print("the same replies every way" if same else "REPLIES DIFFER between the ways")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--float64", action="store_true", help="compute in float64 (a check of the replies, not "
                        "a timing: in float32, batches of other shapes round differently, and where two tokens are "
                        "nearly tied, as often on a random model, a greedy reply may go either way)")  # fmt: skip
    parser.add_argument("--rows", type=int, default=20, help="the bundled sample's first rows (the card's 20)")
    parser.add_argument("--prompts", type=int, default=12, help="the forgetting probe's first prompts (of 12)")
    args = parser.parse_args()
    if args.runs < 1 or not 1 <= args.rows <= 48 or not 1 <= args.prompts <= 12:
        parser.exit(2, "--runs must be at least 1, --rows 1 to 48 (the sample's rows), --prompts 1 to 12\n")

    import torch

    from lora_core.chat import ChatEngine, GenerationSettings
    from lora_core.demo import sample_rows
    from lora_core.evaluation import ANSWER_MARGIN, PROBE_MAX_NEW_TOKENS, probe_prompts
    from lora_core.sampling import ANSWER_MAX, answer_budget

    with tempfile.TemporaryDirectory() as tmp:
        base = choose_base(args.base, tmp)
        engine = ChatEngine()
        engine.load_base(base)
        engine.activate(make_adapter(base, Path(tmp) / "adapter"))
        if args.float64:
            engine.model.double()
        rows = sample_rows()[: args.rows]
        probe, sample = f"forgetting probe, {args.prompts} prompts", f"sample rows, {len(rows)}"
        workloads = {
            probe: (
                [[{"role": "user", "content": p["prompt"]}] for p in probe_prompts()[: args.prompts]],
                GenerationSettings(max_new_tokens=PROBE_MAX_NEW_TOKENS),
            ),
            sample: (
                [[{"role": "user", "content": r["instruction"]}] for r in rows],
                GenerationSettings(
                    max_new_tokens=answer_budget(
                        engine.tokenizer, [r["output"] for r in rows], ANSWER_MARGIN, ANSWER_MAX
                    )  # fmt: skip
                ),
            ),
        }
        dtype = next(engine.model.parameters()).dtype
        print(f"base {base}, {dtype}, {torch.get_num_threads()} threads, {args.runs} runs of each way, alternating")
        for workload, (conversations, settings) in workloads.items():
            times: dict[str, list[float]] = {name: [] for name in WAYS}
            replies: dict[str, tuple] = {}
            for _ in range(args.runs):
                for name, way in WAYS.items():
                    start = time.perf_counter()
                    replies[name] = way(engine, conversations, settings)
                    times[name].append(time.perf_counter() - start)
            table(f"{workload}, {settings.max_new_tokens} new tokens at most", times, replies)
        parts = [workloads[sample], workloads[probe]]
        times = {name: [] for name in CARD_WAYS}
        replies = {}
        for _ in range(args.runs):
            for name, way in CARD_WAYS.items():
                start = time.perf_counter()
                replies[name] = way(engine, parts)
                times[name].append(time.perf_counter() - start)
        budgets = " and ".join(str(settings.max_new_tokens) for _, settings in parts)
        title = f"the card: {len(rows)} rows and the probe's {args.prompts} prompts, {budgets} new tokens at most"
        table(title, times, replies)


if __name__ == "__main__":
    main()
