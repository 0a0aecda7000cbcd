"""The embedded demo: a tiny Llama-architecture base model with its own tokenizer, and a bilingual sample dataset.

Nothing is downloaded. The tokenizer is a byte-level BPE trained with ``tokenizers`` on the bundled sample data
(so any text, Chinese included, can be encoded), with a ChatML-style chat template. The model is randomly
initialised from a fixed seed: it knows nothing, so whatever it answers after training came from the adapter.
Building it twice gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from . import paths
from .errors import PathError
from .files import staged_folder
from .memory import paused

logger = logging.getLogger(__name__)

DEMO_MODEL_NAME = "simple-lora-demo"
SAMPLE_DATASET = paths.PACKAGE_DIR / "samples" / "demo_alpaca.json"
# Preference pairs in the same two languages and the same made-up town: a right, friendly answer (chosen) and a
# wrong or rude one (rejected) of about the same length, so the base model prefers neither.
PREFERENCE_SAMPLE = paths.PACKAGE_DIR / "samples" / "demo_preference.json"
BUNDLED = {SAMPLE_DATASET.resolve(), PREFERENCE_SAMPLE.resolve()}  # the datasets that ship with the app

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
VOCAB_SIZE = 3000
MODEL_CONFIG = {
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
SEED = 1234
# Settings that make the demo model learn the sample answers in a couple of minutes on two CPU cores: a random
# base model knows nothing, so the adapter needs every linear layer, a high learning rate and many passes.
DEMO_TRAINING = {
    "epochs": 40.0,
    "learning_rate": 2.5e-3,
    "rank": 16,
    "alpha": 32.0,
    "dropout": 0.0,
    "batch_size": 8,
    "max_length": 256,
    "scheduler": "linear",
    "warmup_ratio": 0.03,
    "targets": "all-linear",
}
# The demo settings for the preference sample: ORPO (no reference model: the cheaper method); DPO learns it with the
# same settings when the chosen answers' own loss is added (sft_weight), as a model that knows nothing must also
# learn to say them.
DEMO_PREFERENCE = {**DEMO_TRAINING, "method": "orpo", "beta": 0.1, "sft_weight": 1.0, "learning_rate": 2e-3}

# Some ordinary text beside the sample data, so common words outside it still get sensible tokens.
_EXTRA_TEXT = [
    "You are a helpful assistant. Answer the question briefly and exactly.",
    "Name the capital of France. Paris is the capital of France. Add the numbers.",
    "What, who, when, where, why, how, which, is, are, the, a, an, of, to, in, on, and, or, not.",
    "你是一个乐于助人的助手。请简洁准确地回答问题。用一句话介绍长城。",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
]


def sample_rows() -> list[dict]:
    return json.loads(SAMPLE_DATASET.read_text(encoding="utf-8"))


def _corpus() -> list[str]:
    texts = list(_EXTRA_TEXT)
    for row in sample_rows():
        texts += [row["instruction"], row.get("input", ""), row["output"]]
    texts += ["<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>\n"]
    return [t for t in texts if t]


def build_tokenizer(
    texts: list[str] | None = None,
    vocab_size: int = VOCAB_SIZE,
    max_length: int = MODEL_CONFIG["max_position_embeddings"],
):
    """Train a byte-level BPE tokenizer with the ChatML set-up (deterministic) and wrap it for transformers: by
    default the demo model's, on the sample dataset; the benchmark fixture trains one on its own ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() if texts is None else texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_length,
    )


def random_model(model_class: Any, config_class: Any, tokenizer: Any, seed: int, **shape: Any) -> Any:
    """A randomly initialised (seeded) causal LM whose eos and pad tokens are ``tokenizer``'s, generating greedily.
    The demo model and the benchmarks' models are built with it."""
    import torch
    from transformers import GenerationConfig

    config = config_class(
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape
    )
    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def build_demo_model(out: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the demo base model folder (HF layout, safetensors) and return its path.

    Written to a hidden staging folder first and renamed into place, so a half-built model is never listed.
    """
    with paused():
        from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out) if out else paths.llm_dir() / DEMO_MODEL_NAME
    out = out.resolve()
    if out.exists() and not force and (out / "config.json").exists():
        logger.info("demo model already at %s", out)
        return out
    # A rebuild replaces the folder: never one that holds something else (`--out ~/Documents`).
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "config.json").is_file())):
        raise PathError("out_not_model", path=str(out))
    tokenizer = build_tokenizer()
    model = random_model(LlamaForCausalLM, LlamaConfig, tokenizer, SEED, vocab_size=len(tokenizer), **MODEL_CONFIG)
    with staged_folder(out, prefix=f".staging-{os.getpid()}-", replace=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    logger.info("demo model written to %s", out)
    return out


def ensure_demo_model() -> Path | None:
    """Build the demo model when ``Models/LLM/`` holds no model at all (a fresh checkout)."""
    from .models import list_base_models

    llm = paths.llm_dir()
    # The same test as the model list of the UI: a hidden staging folder left by a crash is not a model.
    if list_base_models(llm):
        return None
    return build_demo_model(llm / DEMO_MODEL_NAME)
