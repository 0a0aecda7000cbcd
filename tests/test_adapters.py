"""Adapter folders: scan lists valid, external and invalid ones (with the reason); verification refuses bad ones."""

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file
from tiny import tiny_peft_model

from lora_core import adapters
from lora_core.adapters import AdapterError, Manifest, save_adapter, scan, verify_adapter
from lora_core.demo import build_tokenizer


@pytest.fixture(scope="module")
def peft_model():
    return tiny_peft_model()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_save_writes_only_the_adapter_files_atomically(tmp_path, peft_model, tokenizer):
    dest = tmp_path / "task_20250101_000000"
    out = save_adapter(peft_model, tokenizer, Manifest(status="completed", task="task"), dest)
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "training_meta.json", "tokenizer.json"} <= names
    assert not names & {"README.md", "model.safetensors", "pytorch_model.bin"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    with pytest.raises(AdapterError, match="already exists"):
        save_adapter(peft_model, tokenizer, Manifest(), dest)  # never overwrites


def test_scan_lists_valid_external_and_invalid_with_reasons(tmp_path, peft_model, tokenizer):
    root = tmp_path / "LoRA"
    good = save_adapter(peft_model, tokenizer, Manifest(status="completed", task="good"), root / "good_1")
    external = root / "external"
    shutil.copytree(good, external)
    (external / "training_meta.json").unlink()

    (root / "empty").mkdir()
    pickle_only = root / "pickle_only"
    shutil.copytree(good, pickle_only)
    (pickle_only / "adapter_model.safetensors").unlink()
    (pickle_only / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    data = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    bad_meta = root / "bad_meta"
    shutil.copytree(good, bad_meta)
    (bad_meta / "training_meta.json").write_text("{not json")
    nan = root / "nan"
    shutil.copytree(good, nan)
    save_file({"base_model.model.x.lora_A.weight": torch.tensor([[float("nan")]])}, nan / "adapter_model.safetensors")
    shutil.copytree(good, root / ".staging-half_written")

    found = {info.name: info for info in scan(root)}
    assert ".staging-half_written" not in found
    assert found["good_1"].valid and not found["good_1"].external and found["good_1"].status == "completed"
    assert found["good_1"].rank == 4 and found["good_1"].target_modules == ["q_proj", "v_proj"]
    assert found["external"].valid and found["external"].external
    reasons = {name: (info.valid, info.reason_code) for name, info in found.items()}
    assert reasons["empty"] == (False, "adapter_no_config")
    assert reasons["pickle_only"] == (False, "adapter_pickle_only")
    assert reasons["truncated"] == (False, "adapter_corrupt")
    assert reasons["bad_meta"] == (False, "adapter_bad_meta")
    assert reasons["nan"] == (False, "adapter_not_finite")
    assert all(info.reason for info in found.values() if not info.valid)


def test_pickle_weights_are_never_unpickled(tmp_path, monkeypatch, peft_model, tokenizer):
    folder = save_adapter(peft_model, tokenizer, Manifest(), tmp_path / "a")
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(b"whatever")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(AdapterError, match="pickle"):
        verify_adapter(folder)


def test_base_fingerprint_mismatch_is_refused(tmp_path, peft_model, tokenizer):
    base_a, base_b = tmp_path / "a", tmp_path / "b"
    for base, layers in ((base_a, 1), (base_b, 2)):
        base.mkdir()
        (base / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": layers}))
    meta = Manifest(base_model=str(base_a), base_model_name="a", base_fingerprint=adapters.base_fingerprint(base_a))
    folder = save_adapter(peft_model, tokenizer, meta, tmp_path / "adapter")
    verify_adapter(folder, base_dir=base_a)
    with pytest.raises(AdapterError, match="trained on the base model a, but the base model is b") as err:
        verify_adapter(folder, base_dir=base_b)
    assert err.value.code == "adapter_base_mismatch"


def test_run_names_are_sanitised_and_unique(tmp_path):
    name = adapters.run_name("../../etc/passwd; rm -rf /")
    assert "/" not in name and ".." not in name and ";" not in name
    (tmp_path / "x_1").mkdir()
    assert adapters.unique_dir(tmp_path, "x_1").name == "x_1_2"


def test_delete_removes_only_a_named_adapter_inside_the_root(tmp_path, peft_model, tokenizer):
    root = tmp_path / "LoRA"
    save_adapter(peft_model, tokenizer, Manifest(), root / "keep")
    save_adapter(peft_model, tokenizer, Manifest(), root / "drop")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    for bad in ("../outside", "/etc", "link", ".", "", "missing"):
        with pytest.raises((AdapterError, adapters.paths.PathError)):
            adapters.delete_adapter(bad, root)
    adapters.delete_adapter("drop", root)
    assert sorted(p.name for p in root.iterdir()) == ["keep", "link"] and outside.is_dir()


def test_a_manifest_written_before_it_had_a_schema_version_still_reads(tmp_path):
    old = {"status": "completed", "task": "t", "base_model": "/m/demo", "base_model_name": "demo",
           "loss_history": [[1, 2.5], [2, 1.5]], "eval_loss_after": None,
           "dataset": {"name": "d.json", "rows_total": 3}, "a_key_from_elsewhere": 7}  # fmt: skip
    (tmp_path / adapters.META_NAME).write_text(json.dumps(old))
    manifest = adapters.read_manifest(tmp_path)
    assert manifest.schema_version == 1 and manifest.task == "t" and manifest.dataset.rows_total == 3
    assert manifest.final_train_loss == 1.5 and manifest.final_eval_loss is None
    assert manifest.to_json()["a_key_from_elsewhere"] == 7  # kept when written back
    (tmp_path / adapters.META_NAME).write_text("[1, 2]")
    with pytest.raises(AdapterError) as err:
        adapters.read_manifest(tmp_path)
    assert err.value.code == "adapter_bad_meta"
