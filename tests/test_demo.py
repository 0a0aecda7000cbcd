"""The embedded demo: a base model built offline and byte for byte the same every time, and its sample dataset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lora_core import demo
from lora_core.data import load_records
from lora_core.errors import SimpleLoraError
from lora_core.masking import IGNORE_INDEX, encode_messages, prompt_ids

IM_END = "<|im_end|>"


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time, so a rewrite would show."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh SIMPLE_LORA_HOME whose Models/LLM/ ensure_demo_model() filled (one build for the whole module)."""
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMPLE_LORA_HOME", str(root))
        (root / "Models" / "LLM").mkdir(parents=True)
        built = demo.ensure_demo_model()
    assert built == root / "Models" / "LLM" / demo.DEMO_MODEL_NAME
    return root


@pytest.fixture(scope="module")
def model_dir(home: Path) -> Path:
    return home / "Models" / "LLM" / demo.DEMO_MODEL_NAME


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


# ---------------------------------------------------------------------------------------------------------
# The model folder


def test_folder_has_safetensors_config_and_tokenizer_with_template(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert not [n for n in names if n.startswith(".")]  # no staging leftovers
    assert 5_000_000 < (model_dir / "model.safetensors").stat().st_size < 50_000_000
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    # transformers 5 writes the template to its own file; older versions into tokenizer_config.json
    template = (model_dir / "chat_template.jinja").read_text() if "chat_template.jinja" in names else ""
    template += json.loads((model_dir / "tokenizer_config.json").read_text()).get("chat_template", "")
    assert "<|im_start|>" in template and "add_generation_prompt" in template
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")]


def test_building_twice_gives_byte_identical_files(model_dir: Path, tmp_path: Path) -> None:
    again = demo.build_demo_model(tmp_path / "again")
    assert again == (tmp_path / "again").resolve()
    first, second = file_hashes(model_dir), file_hashes(again)
    assert "model.safetensors" in first and "tokenizer.json" in first
    assert first == second


def test_loads_offline_with_the_auto_classes(model_dir: Path, tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 1_000_000 < model.num_parameters() < 10_000_000
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    ids = tokenizer("Who keeps the lighthouse?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "text",
    [
        "Who keeps the lighthouse of Lumen Bay?",
        "灯塔镇的灯塔是什么颜色？灯塔是青绿色的。",
        "Mixed 中英 text, 数字 42 and spaces  \n\ttabs, emoji 🚢, ä ß — never seen in the corpus.",
    ],
)
def test_tokenizer_round_trips_chinese_and_english(tokenizer, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode("utf-8"))  # BPE merged something: it is not byte by byte


def test_chat_template_renders_chatml(tokenizer) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "Hi!"},
    ]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\nHi!<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(conversation[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n")
    assert text.startswith(prompt)


# ---------------------------------------------------------------------------------------------------------
# ensure_demo_model: only for a fresh checkout


def test_ensure_does_nothing_when_a_model_is_there(home: Path, model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))
    before = snapshot(home)
    assert demo.ensure_demo_model() is None
    assert snapshot(home) == before


def test_ensure_does_nothing_when_another_model_is_there(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))
    other = tmp_path / "Models" / "LLM" / "my-model"
    other.mkdir(parents=True)
    (other / "config.json").write_text('{"model_type": "llama"}')
    assert demo.ensure_demo_model() is None
    assert [p.name for p in (tmp_path / "Models" / "LLM").iterdir()] == ["my-model"]


def test_ensure_does_not_count_hidden_or_model_less_folders(tmp_path: Path, monkeypatch) -> None:
    # A staging folder left by an interrupted build (it may already hold config.json) is not a model the user
    # can pick, so it must not stop the demo model from being built. Building is stubbed: the build itself is
    # tested above.
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))
    llm = tmp_path / "Models" / "LLM"
    (llm / ".simple-lora-demo.staging-1").mkdir(parents=True)
    (llm / ".simple-lora-demo.staging-1" / "config.json").write_text("{}")
    (llm / "notes").mkdir()
    calls = []
    monkeypatch.setattr(demo, "build_demo_model", lambda out, **kw: calls.append(Path(out)) or Path(out))
    assert demo.ensure_demo_model() == llm / demo.DEMO_MODEL_NAME
    assert calls == [llm / demo.DEMO_MODEL_NAME]


def test_build_refuses_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    # `demo-model --out ~/Documents` must never delete what is there.
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    for force in (False, True):
        with pytest.raises(SimpleLoraError, match="papers"):
            demo.build_demo_model(folder, force=force)
    assert [p.name for p in tmp_path.iterdir()] == ["papers"]
    assert (folder / "thesis.txt").read_text() == "years of work"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(SimpleLoraError, match="a_file"):
        demo.build_demo_model(a_file)
    assert a_file.read_text() == "x"


def test_build_keeps_an_existing_model_unless_forced(model_dir: Path, monkeypatch) -> None:
    before = snapshot(model_dir)
    assert demo.build_demo_model(model_dir) == model_dir
    assert snapshot(model_dir) == before


# ---------------------------------------------------------------------------------------------------------
# The sample dataset


def test_sample_dataset_is_valid_bilingual_and_specific() -> None:
    report = load_records(demo.SAMPLE_DATASET)
    assert report.ok and report.format == "alpaca"
    assert report.total_rows == report.valid_rows >= 40
    rows = demo.sample_rows()
    chinese = [r for r in rows if any("\u4e00" <= ch <= "\u9fff" for ch in r["instruction"] + r["output"])]
    english = [r for r in rows if (r["instruction"] + r["output"]).isascii()]
    assert len(chinese) >= 10 and len(english) >= 10
    answers = [r["output"].strip() for r in rows]
    assert len(set(answers)) == len(answers)
    questions = [(r["instruction"], r.get("input", "")) for r in rows]
    assert len(set(questions)) == len(questions)


def test_masking_of_every_sample_row_with_the_real_demo_tokenizer(tokenizer) -> None:
    """Byte-level BPE with Chinese: the trained tokens are exactly the answer and its end of turn, and what chat
    sends for the same question is the masked prefix."""
    report = load_records(demo.SAMPLE_DATASET)
    for record in report.records:
        enc = encode_messages(tokenizer, record.messages)
        answer = record.messages[-1].content
        trained = [i for i, label in zip(enc.input_ids, enc.labels, strict=True) if label != IGNORE_INDEX]
        assert [label for label in enc.labels if label != IGNORE_INDEX] == trained
        assert tokenizer.decode(trained) == answer + IM_END + "\n", f"row {record.row}"
        first = next(i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX)
        assert all(label != IGNORE_INDEX for label in enc.labels[first:]), f"row {record.row}: one trained run"
        prompt = prompt_ids(tokenizer, record.messages[:-1])
        assert len(prompt) == first, f"row {record.row}"
        assert enc.input_ids[:first] == prompt, f"row {record.row}"
        assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
