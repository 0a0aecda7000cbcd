"""Chat speed: generation tokens/s and time to first token with an active adapter, against the bare base model
in the same run. Three ways, alternating, several runs each, medians:

- bare base: the base model alone, no PEFT at all (the peer);
- adapter (Simple LoRA): ChatEngine with the adapter active, its weights merged into the base layers;
- adapter, unmerged: the same adapter through PEFT's own LoRA path (what a plain PeftModel does).

Then chat sessions (what the app runs): one session replying with adapter A, against two sessions on adapters A
and B whose replies alternate (each reply switches the merged adapter) and two sessions asking at once (two
threads; replies are generated one at a time).

    .venv/bin/python bench/chat.py [--base DIR] [--runs 5] [--new-tokens 128]

Without --base it uses the bench fixture's model (bench/fixture.py) when present, else a fresh demo model. The
adapter is LoRA r=16 on q,k,v,o with random weights (speed does not depend on what it learnt).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "user", "content": "Tell me about the lighthouse of Lumen Bay and the ferry that leaves at dawn."}]


def make_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.01)
    peft_model.save_pretrained(out)
    return out


def choose_base(base: Path | None, tmp: str) -> Path:
    """``--base``, else the bench fixture's model (bench/fixture.py) when present, else a fresh demo model."""
    from lora_core.demo import build_demo_model

    fixture = ROOT / "bench" / ".fixture" / "model"
    if base is not None:
        return base
    return fixture if (fixture / "config.json").is_file() else build_demo_model(Path(tmp) / "demo")


def timed_generate(model, ids, new_tokens: int) -> float:
    import torch

    with torch.no_grad():
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from lora_core.chat import ChatEngine
    from lora_core.masking import prompt_ids

    with tempfile.TemporaryDirectory() as tmp:
        base = choose_base(args.base, tmp)
        adapter = make_adapter(base, Path(tmp) / "adapter")

        bare = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
        engine = ChatEngine()
        engine.load_base(base)
        engine.activate(adapter)
        name = adapter.name
        ids = torch.tensor([prompt_ids(engine.tokenizer, PROMPT)])

        def merged_mode():
            return engine._adapter_mode(name)

        def unmerged_mode():
            engine._unmerge()
            engine.model.set_adapter(name)
            return nullcontext()

        ways = {
            "bare base model (peer)": (bare, nullcontext),
            "adapter, merged (Simple LoRA chat)": (engine.model, merged_mode),
            "adapter, unmerged (PEFT's LoRA path)": (engine.model, unmerged_mode),
        }
        results: dict[str, dict[str, list[float]]] = {way: {"tps": [], "ttft": []} for way in ways}
        for model, mode in ways.values():  # warm-up
            with mode():
                timed_generate(model, ids, 8)
        for _ in range(args.runs):
            for way, (model, mode) in ways.items():
                with mode():
                    first = timed_generate(model, ids, 1)
                    full = timed_generate(model, ids, args.new_tokens)
                results[way]["ttft"].append(first)
                results[way]["tps"].append((args.new_tokens - 1) / (full - first))

        sessions_rows = sessions_table(base, adapter, make_adapter(base, Path(tmp) / "adapter-b", seed=1), args)

    peer = statistics.median(results["bare base model (peer)"]["tps"])
    print(f"model: {base} ({sum(p.numel() for p in bare.parameters()) / 1e6:.1f}M parameters), prompt "
          f"{ids.shape[1]} tokens, {args.new_tokens} new tokens, greedy, KV cache, {args.runs} runs, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    print("| way | tokens/s (median) | time to first token, ms | ratio to bare base |")
    print("|---|---|---|---|")
    for way, r in results.items():
        tps = statistics.median(r["tps"])
        print(f"| {way} | {tps:.1f} | {1000 * statistics.median(r['ttft']):.1f} | {tps / peer:.2f}x |")
    print()
    print("| chat sessions (whole replies: prompt, streaming, decoding) | tokens/s (median) | ratio to the first |")
    print("|---|---|---|")
    one = sessions_rows[0][1]
    for way, tps in sessions_rows:
        print(f"| {way} | {tps:.1f} | {tps / one:.2f}x |")


def sessions_table(base: Path, adapter_a: Path, adapter_b: Path, args: argparse.Namespace) -> list[tuple[str, float]]:
    """Tokens/s of replies through ``ChatSession``: one session, two alternating, two at once."""
    import threading

    from lora_core.chat import ChatEngine, GenerationSettings
    from lora_core.sessions import ChatSession, unload_all

    a, b = ChatSession(), ChatSession()
    a.load(base, adapter_a)
    b.load(base, adapter_b)
    engine = a.engine()[0]
    inner = engine.model.get_base_model()
    inner.generation_config.min_new_tokens = args.new_tokens  # every reply exactly this long
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    replies = 4

    def sequential(order: list[ChatSession]) -> float:
        start = time.perf_counter()
        for session in order:
            session.generate(PROMPT, settings)
        return len(order) * args.new_tokens / (time.perf_counter() - start)

    def at_once() -> float:
        threads = [threading.Thread(target=sequential, args=([s] * (replies // 2),)) for s in (a, b)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return replies * args.new_tokens / (time.perf_counter() - start)

    alone = ChatEngine()  # the chat as it was before sessions: one engine, its active adapter
    alone.load_base(base)
    alone.activate(adapter_a)
    alone.model.get_base_model().generation_config.min_new_tokens = args.new_tokens

    def engine_alone() -> float:
        start = time.perf_counter()
        for _ in range(replies):
            alone.generate(PROMPT, settings)
        return replies * args.new_tokens / (time.perf_counter() - start)

    ways = {
        "one engine, its active adapter (the chat before sessions)": engine_alone,
        "one session, adapter A": lambda: sequential([a] * replies),
        "two sessions, adapters A and B, replies alternating": lambda: sequential([a, b] * (replies // 2)),
        "two sessions, adapters A and B, asking at once": at_once,
    }
    sequential([a, b])  # warm-up
    measured: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.runs):
        for way, run in ways.items():
            measured[way].append(run())
    unload_all()
    alone.unload()
    return [(way, statistics.median(values)) for way, values in measured.items()]


if __name__ == "__main__":
    main()
