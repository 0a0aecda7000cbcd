"""Build the benchmark fixture: a random-init Llama model, its tokenizer and 2,000 Alpaca rows. Deterministic.

    .venv/bin/python bench/fixture.py [--out bench/.fixture] [--rows 2000] [--seed 0]

Writes ``<out>/model/`` (config, ``model.safetensors``, a byte-level BPE tokenizer trained here on the generated
text, ChatML chat template, eos ``<|im_end|>``) and ``<out>/alpaca.json``. Nothing is downloaded.

The text is made-up words (syllable strings drawn with a Zipf law, so BPE splits the rare ones like real text) in
sentences. Lengths are drawn per row in tokens of the final tokenizer, lognormal and clipped: the prompt
(instruction + optional input) 20-200 tokens, the response 10-290, so the whole chat-templated example is under
512 tokens with a long right tail (about p50 150, p90 320), like real instruction data.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import random
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lora_core.demo import build_tokenizer, random_model  # noqa: E402  (the demo model's recipes)

DEFAULT_OUT = Path(__file__).resolve().parent / ".fixture"
MODEL_CONFIG = {
    "hidden_size": 512,
    "intermediate_size": 1408,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
VOCAB_SIZE = 8000
MAX_TOTAL = 512
# Lognormal (median, sigma) and clip range, in tokens.
PROMPT_LEN = (50.0, 0.6, 20, 200)
RESPONSE_LEN = (72.0, 0.92, 10, 290)
INPUT_SHARE = 0.4  # rows with a non-empty "input" field
LEXICON_SIZE = 20000

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "st", "tr",
           "ch", "sh", "th", "pl", "gr"]  # fmt: skip
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]


def _lexicon(rng: random.Random) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < LEXICON_SIZE:
        syllables = rng.choices([1, 2, 3, 4], weights=[30, 40, 22, 8])[0]
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return sorted(words, key=len)  # the frequent words are the short ones, as in real text


class _Writer:
    """Endless made-up prose: Zipf-distributed words in sentences of 5-16 words, with commas and numbers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = _lexicon(rng)
        weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(self.words))]
        total = sum(weights)
        self.cum = list(itertools.accumulate(w / total for w in weights))

    def word(self) -> str:
        return self.words[min(bisect.bisect_left(self.cum, self.rng.random()), len(self.words) - 1)]

    def words_stream(self, n_words: int, question: bool = False) -> list[str]:
        out: list[str] = []
        while len(out) < n_words:
            size = self.rng.randint(5, 16)
            sentence = [self.word() for _ in range(size)]
            for i in range(1, size - 1):
                roll = self.rng.random()
                if roll < 0.06:
                    sentence[i] += ","
                elif roll < 0.09:
                    sentence[i] = str(self.rng.randint(0, 2000))
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += "?" if question and not out else "."
            out += sentence
        return out


def _draw(rng: random.Random, spec: tuple[float, float, int, int]) -> int:
    median, sigma, low, high = spec
    return min(high, max(low, round(rng.lognormvariate(math.log(median), sigma))))


def _build_tokenizer(texts: list[str]):
    """The demo model's tokenizer recipe on the fixture's texts; the chat markers repeated so that BPE merges them."""
    markers = ["<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>\n"] * 50
    return build_tokenizer(texts + markers, vocab_size=VOCAB_SIZE, max_length=MAX_TOTAL)


def _cut(tokenizer, words: list[str], target: int) -> str:
    """The longest prefix of ``words`` whose text has at most ``target`` tokens (at least one word)."""

    def count(k: int) -> int:
        return len(tokenizer(" ".join(words[:k]), add_special_tokens=False)["input_ids"])

    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    return text if text[-1] in ".?" else text.rstrip(",") + "."


def build(out: Path, rows: int = 2000, seed: int = 0) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(seed)
    writer = _Writer(rng)
    plans = []
    for _ in range(rows):
        prompt_len, response_len = _draw(rng, PROMPT_LEN), _draw(rng, RESPONSE_LEN)
        input_len = round(prompt_len * rng.uniform(0.3, 0.7)) if rng.random() < INPUT_SHARE else 0
        plans.append(
            {
                "instruction": (prompt_len - input_len, writer.words_stream(prompt_len - input_len + 4, True)),
                "input": (input_len, writer.words_stream(input_len + 4) if input_len else []),
                "output": (response_len, writer.words_stream(response_len + 4)),
            }
        )
    # The tokenizer learns from the generated text; each field is then cut to its drawn length in its tokens.
    tokenizer = _build_tokenizer([" ".join(words) for plan in plans for _, words in plan.values() if words])
    if len(tokenizer) > VOCAB_SIZE:
        raise SystemExit(f"the tokenizer has {len(tokenizer)} tokens, more than {VOCAB_SIZE}")
    data = []
    for plan in plans:
        row = {}
        for name, (target, words) in plan.items():
            row[name] = _cut(tokenizer, words, target) if words else ""
        if not row["input"]:
            del row["input"]
        data.append(row)

    lengths = []
    for row in data:
        user = f"{row['instruction']}\n\n{row['input']}" if row.get("input") else row["instruction"]
        chat = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        lengths.append(len(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]))
    if max(lengths) >= MAX_TOTAL:
        raise SystemExit(f"an example has {max(lengths)} tokens, not under {MAX_TOTAL}")

    model_dir = out / "model"
    if out.exists():
        shutil.rmtree(out)
    model_dir.mkdir(parents=True)
    model = random_model(LlamaForCausalLM, LlamaConfig, tokenizer, seed, vocab_size=VOCAB_SIZE, **MODEL_CONFIG)
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    (out / "alpaca.json").write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")

    ordered = sorted(lengths)
    stats = {
        "rows": rows,
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "tokenizer_vocab": len(tokenizer),
        "example_tokens": {
            "p10": ordered[len(ordered) // 10],
            "p50": ordered[len(ordered) // 2],
            "mean": round(statistics.mean(ordered), 1),
            "p90": ordered[len(ordered) * 9 // 10],
            "max": ordered[-1],
        },
    }
    (out / "fixture.json").write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder (default bench/.fixture)")
    parser.add_argument("--rows", type=int, default=2000, help="Alpaca rows to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the text, the lengths and the model weights")
    args = parser.parse_args()
    stats = build(args.out.resolve(), args.rows, args.seed)
    print(f"fixture written to {args.out}: {json.dumps(stats)}")


if __name__ == "__main__":
    main()
