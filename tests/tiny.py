"""Test helpers: tiny tokenizers built locally (so tests can write expected token ids by hand), and the app
launched on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

WORDS = [
    "[UNK]", "<s>", "</s>", "<pad>", "###", "Instruction:", "Response:", "hello", "world", "hi",
    "there", "sys", "be", "brief", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "more", "ok",
]  # fmt: skip
ID = {w: i for i, w in enumerate(WORDS)}
SPECIAL = ["<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]

# Each turn: <|role|> content <|end|>, whitespace separated so every word is one token.
WORD_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def word_tokenizer(*, bos: bool = False, pad_is_eos: bool = False, template: str | None = None):
    """A whitespace word-level tokenizer over WORDS: one word, one id, easy to predict by hand."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>" if pad_is_eos else "<pad>",
        unk_token="[UNK]",
        additional_special_tokens=[t for t in SPECIAL if t.startswith("<|")],
        chat_template=template,
    )


def ids(text: str) -> list[int]:
    return [ID[w] for w in text.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched_app() -> Iterator:
    """The app, built afresh (so it reads the test's SIMPLE_LORA_HOME), served on a free port; yields a client."""
    from gradio_client import Client

    import app

    blocks = app.build_app()
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        blocks.close()


def wait_for(predicate, timeout: float = 60.0) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def followed_training(client, timeout: float = 300.0) -> dict:
    """Poll the app's /training_status through ``client`` until the training ends; its last status."""
    status: dict = {}

    def ended() -> bool:
        nonlocal status
        status = client.predict(api_name="/training_status")
        time.sleep(0.2)
        return status["state"] in ("completed", "stopped", "failed")

    assert wait_for(ended, timeout), status
    return status


ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    """``python app.py`` running in its own process: its port, URL and everything it printed so far."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def served_app(home: Path, *args: str, env: dict | None = None, timeout: float = 120) -> Iterator[Served]:
    """``python app.py --port <free> *args`` over the data home ``home``, as a user starts it; stopped at the end.
    Its output goes to a file, not a pipe that nobody reads once it has started (a full pipe blocks the app)."""
    port = free_port()
    log = home / f"app_{port}.log"
    environ = {
        **os.environ,
        "SIMPLE_LORA_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), *args], cwd=ROOT, env=environ, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    served = Served(proc, port, log)
    try:
        deadline = time.monotonic() + timeout
        while "Running on local URL" not in served.output():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the app did not start:\n" + served.output()[-5000:])
            time.sleep(0.2)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def release_training() -> None:
    """Stop, without saving, a training that a test left running: the core allows one per process."""
    from lora_core import training

    job = training.active_job()
    if job is not None:
        job.stop(save=False)
        job.wait(60)


def tiny_peft_model(layers: int = 1):
    """A tiny random Llama with LoRA on q_proj and v_proj whose B matrices are not zero (so the adapter does
    something), seeded."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)
    return model


def write_tiny_gguf(path: Path, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2) -> Path:
    """A tiny random Llama model as a GGUF file, written with the ``gguf`` package the way llama.cpp lays one out
    (its tokenizer is the demo model's byte-level BPE, with a ChatML template), in float32."""
    import json

    import gguf
    import numpy as np

    from lora_core.demo import build_tokenizer

    tokenizer = build_tokenizer()
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: item[1])]
    specials = set(tokenizer.all_special_tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    rng = np.random.default_rng(0)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    for add, value in ((writer.add_context_length, 256), (writer.add_embedding_length, hidden),
                       (writer.add_block_count, layers), (writer.add_feed_forward_length, hidden * 2),
                       (writer.add_head_count, heads), (writer.add_head_count_kv, kv_heads),
                       (writer.add_layer_norm_rms_eps, 1e-6), (writer.add_rope_freq_base, 10000.0),
                       (writer.add_vocab_size, len(tokens))):  # fmt: skip
        add(value)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_chat_template(tokenizer.chat_template)
    head_dim = hidden // heads
    writer.add_tensor("token_embd.weight", weight(len(tokens), hidden))
    for i in range(layers):
        for name, shape in (("attn_q", (hidden, hidden)), ("attn_k", (kv_heads * head_dim, hidden)),
                            ("attn_v", (kv_heads * head_dim, hidden)), ("attn_output", (hidden, hidden)),
                            ("ffn_gate", (hidden * 2, hidden)), ("ffn_up", (hidden * 2, hidden)),
                            ("ffn_down", (hidden, hidden * 2))):  # fmt: skip
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(*shape))
        for norm in ("attn_norm", "ffn_norm"):
            writer.add_tensor(f"blk.{i}.{norm}.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output.weight", weight(len(tokens), hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
