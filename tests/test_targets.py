"""Target-module detection on tiny models built from configs and on name-only module trees (no network)."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
import transformers.dynamic_module_utils
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    Phi3Config,
    Qwen2Config,
)
from transformers.pytorch_utils import Conv1D

from lora_core.errors import ModelError
from lora_core.targets import detect_targets, linear_module_names, meta_model, resolve_targets, targets_for_folder

TINY = dict(vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
CONFIGS = {
    "llama": lambda: LlamaConfig(**SIZES, num_key_value_heads=2, **TINY),
    "qwen2": lambda: Qwen2Config(**SIZES, num_key_value_heads=2, **TINY),
    "gpt2": lambda: GPT2Config(n_embd=32, n_layer=1, n_head=4, n_positions=64, **TINY),
    "gpt_neox": lambda: GPTNeoXConfig(**SIZES, **TINY),
    "phi3": lambda: Phi3Config(**SIZES, **TINY),
}


class Tree(nn.Module):
    """A model that is only names: an nn.Linear at each dotted path, plain nn.Modules in between."""

    def __init__(self, paths: list[str], config: object | None = None) -> None:
        super().__init__()
        for path in paths:
            *parents, leaf = path.split(".")
            node: nn.Module = self
            for part in parents:
                if getattr(node, part, None) is None:
                    node.add_module(part, nn.Module())
                node = getattr(node, part)
            node.add_module(leaf, nn.Linear(4, 4))
        if config is not None:
            self.config = config


TREES = {  # name -> (paths, model_type passed as argument, config)
    "qwen": (
        ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.w1"]
        + ["transformer.h.0.mlp.w2", "transformer.h.0.mlp.c_proj", "lm_head"],
        "qwen",
        None,
    ),
    "chatglm": (
        [f"transformer.encoder.layers.0.{name}" for name in ("self_attention.query_key_value", "self_attention.dense")]
        + [f"transformer.encoder.layers.0.mlp.{name}" for name in ("dense_h_to_4h", "dense_4h_to_h")]
        + ["transformer.output_layer"],
        "chatglm",
        None,
    ),
    "baichuan": (
        [f"model.layers.0.self_attn.{name}" for name in ("W_pack", "o_proj")]
        + [f"model.layers.0.mlp.{name}" for name in ("gate_proj", "up_proj", "down_proj")]
        + ["lm_head"],
        None,
        SimpleNamespace(model_type="baichuan"),
    ),
}
HEADS = {"chatglm": "transformer.output_layer"}  # lm_head elsewhere; GPT-NeoX's embed_out is lm_head in transformers 5

# name -> (attention targets, source, all-linear targets)
LLAMA_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
EXPECTED = {
    "llama": (["q_proj", "v_proj"], "peft", LLAMA_LINEAR),
    "qwen2": (["q_proj", "v_proj"], "peft", LLAMA_LINEAR),
    "gpt2": (["c_attn"], "peft", ["c_attn", "c_fc", "c_proj"]),
    "gpt_neox": (["query_key_value"], "peft", ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]),
    "phi3": (["qkv_proj"], "scan", ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]),  # PEFT does not list phi3
    "qwen": (["c_attn"], "remote-code", ["c_attn", "c_proj", "w1", "w2"]),
    "chatglm": (["query_key_value"], "peft", ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]),
    "baichuan": (["W_pack"], "remote-code", ["W_pack", "down_proj", "gate_proj", "o_proj", "up_proj"]),
}


def build(name: str) -> tuple[nn.Module, str | None]:
    if name in CONFIGS:
        return AutoModelForCausalLM.from_config(CONFIGS[name]()), None
    paths, model_type, config = TREES[name]
    return Tree(paths, config), model_type


def linear_names(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


def lora_wrapped(model: nn.Module, targets: list[str]) -> set[str]:
    """Wrap with PEFT for real and return the names of the modules that became LoRA layers."""
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=targets))
    return {name for name, m in peft_model.base_model.model.named_modules() if isinstance(m, LoraLayer)}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_attention_preset(name: str) -> None:
    model, model_type = build(name)
    selection = detect_targets(model, "attention", model_type)
    targets, source, all_linear = EXPECTED[name]
    assert (selection.model_type, selection.target_modules, selection.source) == (name, targets, source)
    assert selection.linear_modules == all_linear
    assert selection.reason.endswith(".")
    assert selection.to_json() == {
        "model_type": name,
        "target_modules": targets,
        "source": source,
        "reason": selection.reason,
        "linear_modules": all_linear,
    }


@pytest.mark.parametrize("preset", ["attention", "all-linear"])
@pytest.mark.parametrize("name", list(EXPECTED))
def test_peft_wraps_exactly_the_targets_and_never_the_head(name: str, preset: str) -> None:
    model, model_type = build(name)
    head = HEADS.get(name, "lm_head")
    assert head in linear_names(model)
    if name in CONFIGS:
        assert model.get_output_embeddings() is model.get_submodule(head)
    selection = detect_targets(model, preset, model_type)
    if preset == "all-linear":
        assert (selection.source, selection.target_modules) == ("all-linear", EXPECTED[name][2])
        expected = linear_names(model) - {head}
    else:
        expected = {n for n in linear_names(model) if n.rsplit(".", 1)[-1] in EXPECTED[name][0]}
    wrapped = lora_wrapped(model, selection.target_modules)
    assert wrapped == expected
    assert head not in wrapped


def test_gpt2_conv1d_layers_are_linear() -> None:
    model, _ = build("gpt2")
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)
    assert detect_targets(model, "all-linear").target_modules == ["c_attn", "c_fc", "c_proj"]


def test_head_sharing_a_leaf_name_gets_a_longer_suffix() -> None:
    class Model(Tree):
        def get_output_embeddings(self) -> nn.Module:
            return self.head.proj

    model = Model(["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc", "head.proj"])
    assert linear_module_names(model) == ["attn.proj", "fc", "qkv"]
    selection = detect_targets(model, "all-linear", "custom")
    wrapped = lora_wrapped(model, selection.target_modules)
    assert wrapped == {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc"}


@pytest.mark.parametrize("model_type", ["gpt2", "phi"])  # PEFT says c_attn / q_proj, v_proj, fc1, fc2
def test_peft_entry_is_skipped_when_its_names_are_missing(model_type: str) -> None:
    model = Tree([f"model.layers.0.self_attn.{leaf}" for leaf in ("q_proj", "k_proj", "v_proj")])
    selection = detect_targets(model, model_type=model_type)
    assert (selection.source, selection.target_modules) == ("scan", ["q_proj", "v_proj"])


@pytest.mark.parametrize(
    ("leaves", "targets"),
    [
        (["query", "key", "value", "out"], ["query", "value"]),
        (["Wqkv", "out_proj"], ["Wqkv"]),
        (["to_q", "to_k", "to_v", "to_out"], ["to_k", "to_out", "to_q", "to_v"]),  # unknown names: all of the block
    ],
)
def test_scan_on_an_unknown_model_type(leaves: list[str], targets: list[str]) -> None:
    model = Tree([f"encoder.blocks.0.attention.{leaf}" for leaf in leaves] + ["encoder.blocks.0.ffn.fc1", "lm_head"])
    selection = detect_targets(model, model_type="mystery")
    assert (selection.model_type, selection.source, selection.target_modules) == ("mystery", "scan", targets)


def test_default_fallback_without_attention_names() -> None:
    selection = detect_targets(Tree(["blocks.0.mixer.q_proj", "blocks.0.mixer.v_proj", "blocks.0.mixer.fc"]))
    assert (selection.model_type, selection.source) == ("unknown", "default")
    assert selection.target_modules == ["q_proj", "v_proj"]
    assert "LLaMA default" in selection.reason

    selection = detect_targets(Tree(["layers.0.fc1", "layers.0.fc2", "lm_head"]))
    assert (selection.source, selection.target_modules, selection.linear_modules) == (
        "default",
        ["q_proj", "v_proj"],
        ["fc1", "fc2"],
    )
    assert "pick targets from the list" in selection.reason


def test_unknown_preset_and_no_linear_layers() -> None:
    with pytest.raises(ModelError) as err:
        detect_targets(Tree(["layers.0.fc"]), "everything")
    assert err.value.code == "unknown_preset"
    with pytest.raises(ModelError) as err:
        detect_targets(nn.Sequential(nn.ReLU()))
    assert err.value.code == "no_linear_layers"


def test_resolve_targets() -> None:
    model, _ = build("llama")
    assert resolve_targets(model, "attention").source == "peft"
    assert resolve_targets(model, " All-Linear ").source == "all-linear"
    selection = resolve_targets(model, "v_proj, q_proj ,o_proj,")
    assert (selection.source, selection.target_modules) == ("user", ["o_proj", "q_proj", "v_proj"])
    assert selection.linear_modules == EXPECTED["llama"][2]

    with pytest.raises(ModelError) as err:
        resolve_targets(model, "q_proj,lm_head,qkv")
    assert err.value.code == "unknown_target"
    assert err.value.params["unknown"] == ["lm_head", "qkv"]
    assert "lm_head, qkv" in err.value.message and "gate_proj" in err.value.message
    with pytest.raises(ModelError) as err:
        resolve_targets(model, " , ")
    assert err.value.code == "no_target"


def test_meta_model_and_targets_for_folder(tmp_path) -> None:
    CONFIGS["gpt2"]().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not weights")  # never read
    model, model_type = meta_model(tmp_path)
    assert model_type == "gpt2"
    assert all(p.device.type == "meta" for p in model.parameters())

    assert targets_for_folder(tmp_path).target_modules == ["c_attn"]
    assert targets_for_folder(str(tmp_path), "all-linear").target_modules == ["c_attn", "c_fc", "c_proj"]
    assert targets_for_folder(tmp_path, "c_fc").source == "user"


def test_meta_model_refuses_unusable_folders(tmp_path) -> None:
    cases = {"missing": "model_missing", "empty": "model_no_config", "broken": "config_invalid"}
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    for folder, code in cases.items():
        with pytest.raises(ModelError) as err:
            meta_model(tmp_path / folder)
        assert err.value.code == code
        assert str(tmp_path / folder) in err.value.message


REMOTE_CONFIG = """
from pathlib import Path
from transformers import PretrainedConfig

Path(__file__).parent.parent.joinpath("ran").touch()  # proof that folder code ran (parent: the copy's root)


class BaichuanConfig(PretrainedConfig):
    model_type = "baichuan"

    def __init__(self, hidden_size=8, **kwargs):
        self.hidden_size = hidden_size
        super().__init__(**kwargs)
"""
REMOTE_MODEL = """
from torch import nn
from transformers import PreTrainedModel

from .configuration_baichuan import BaichuanConfig


class BaichuanForCausalLM(PreTrainedModel):
    config_class = BaichuanConfig

    def __init__(self, config):
        super().__init__(config)
        attn = nn.ModuleDict({"W_pack": nn.Linear(8, 24), "o_proj": nn.Linear(8, 8)})
        self.model = nn.ModuleDict({"layers": nn.ModuleList([nn.ModuleDict({"self_attn": attn})])})
        self.lm_head = nn.Linear(8, 16)
"""


def test_remote_code_needs_opt_in(tmp_path, monkeypatch) -> None:
    # Where transformers copies a folder's code (and adds to sys.path): tmp_path instead of ~/.cache, undone after.
    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "baichuan"
    folder.mkdir()
    (folder / "configuration_baichuan.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_baichuan.py").write_text(REMOTE_MODEL)
    auto_map = {
        "AutoConfig": "configuration_baichuan.BaichuanConfig",
        "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps({"model_type": "baichuan", "auto_map": auto_map}))

    with pytest.raises(ModelError) as err:
        targets_for_folder(folder)
    assert err.value.code == "remote_code_required"
    assert "trust_remote_code" in err.value.message
    assert not list(tmp_path.rglob("ran"))  # no code from the folder ran

    selection = targets_for_folder(folder, trust_remote_code=True)
    assert (selection.source, selection.target_modules, selection.linear_modules) == (
        "remote-code",
        ["W_pack"],
        ["W_pack", "o_proj"],
    )
    assert list(tmp_path.rglob("ran"))


def test_unknown_model_type_without_code_is_refused(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nobody_knows_me", "hidden_size": 8}))
    with pytest.raises(ModelError) as err:
        meta_model(tmp_path)
    assert err.value.code == "remote_code_required"
    assert "nobody_knows_me" in err.value.message


def test_known_model_type_with_auto_map_uses_transformers_code(tmp_path) -> None:
    # Early Phi-3 / Qwen2 checkpoints ship an auto_map for an architecture transformers now has.
    CONFIGS["phi3"]().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"}  # file absent: must not be read
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert targets_for_folder(tmp_path).target_modules == ["qkv_proj"]
