"""Adapters as zip files: one of ours goes out and comes back in the same; a hostile zip is refused in one
sentence and leaves nothing behind."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tiny import tiny_peft_model

from lora_core import bundles
from lora_core.adapters import Manifest, save_adapter, scan
from lora_core.demo import build_tokenizer
from lora_core.errors import BundleError


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("out") / "LoRA"
    return save_adapter(tiny_peft_model(), build_tokenizer(), Manifest(status="completed", task="t"), root / "t_1")


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_an_adapter_goes_out_as_a_zip_and_comes_back_the_same(adapter, tmp_path) -> None:
    archive = bundles.zip_adapter(adapter, tmp_path / "downloads")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"t_1/{p.name}" for p in adapter.iterdir())  # exactly the folder
    root = tmp_path / "LoRA"
    back = bundles.import_adapter_zip(archive, root)
    assert back.name == "t_1" and sorted(p.name for p in back.iterdir()) == sorted(p.name for p in adapter.iterdir())
    same = load_file(adapter / "adapter_model.safetensors")
    assert all((load_file(back / "adapter_model.safetensors")[k] == v).all() for k, v in same.items())
    again = bundles.import_adapter_zip(archive, root)  # never over the first
    assert again.name == "t_1_2"
    assert [(a.name, a.valid) for a in scan(root)] in (
        [("t_1_2", True), ("t_1", True)],
        [("t_1", True), ("t_1_2", True)],
    )
    flat = tmp_path / "flat.zip"  # a PEFT adapter zipped without a top folder is fine too
    with zipfile.ZipFile(flat, "w") as z:
        for p in ("adapter_config.json", "adapter_model.safetensors"):
            z.write(adapter / p, p)
    external = bundles.import_adapter_zip(flat, root)
    assert next(a for a in scan(root) if a.name == external.name).external


def hostile(tmp_path: Path, adapter: Path, extra: tuple[str, bytes] | None = None, link: str | None = None) -> Path:
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in ("adapter_config.json", "adapter_model.safetensors"):
            z.write(adapter / p, f"a/{p}")
        if extra:
            z.writestr(*extra)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda tmp, a: hostile(tmp, a, ("a/../../evil.txt", b"x")), "zip_path"),
        (lambda tmp, a: hostile(tmp, a, ("/etc/cron.d/evil", b"x")), "zip_path"),
        (lambda tmp, a: hostile(tmp, a, ("a/sub/deeper.txt", b"x")), "zip_path"),
        (lambda tmp, a: hostile(tmp, a, link="a/tokenizer.json"), "zip_link"),
        (lambda tmp, a: hostile(tmp, a, ("a/model.safetensors", b"x")), "zip_not_adapter"),  # a full model
    ],
    ids=["dot-dot", "absolute", "sub-folder", "symlink", "full-model"],
)
def test_a_hostile_zip_is_refused_in_one_sentence_and_writes_nothing(adapter, tmp_path, make, code) -> None:
    root = tmp_path / "LoRA"
    root.mkdir()
    with pytest.raises(BundleError) as err:
        bundles.import_adapter_zip(make(tmp_path, adapter), root)
    assert err.value.code == code and "'hostile.zip'" in err.value.message and "\n" not in err.value.message
    assert listing(root) == []  # no adapter, no staging folder
    assert not (tmp_path / "evil.txt").exists()


def test_a_pickle_only_adapter_and_a_non_zip_are_refused(adapter, tmp_path) -> None:
    root = tmp_path / "LoRA"
    pickled = tmp_path / "pickled.zip"
    with zipfile.ZipFile(pickled, "w") as z:
        z.write(adapter / "adapter_config.json", "adapter_config.json")
        z.writestr("adapter_model.bin", b"\x80\x04 not to be unpickled")
    with pytest.raises(BundleError, match="only pickle weights") as err:
        bundles.import_adapter_zip(pickled, root)
    assert err.value.code == "zip_not_adapter"
    text = tmp_path / "notes.zip"
    text.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(BundleError) as err:
        bundles.import_adapter_zip(text, root)
    assert err.value.code == "not_a_zip" and err.value.message == "'notes.zip' is not a zip file."
    assert listing(root) == []


def test_a_zip_bomb_is_stopped_at_the_cap(adapter, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bundles, "MAX_UNPACKED_BYTES", 1024 * 1024)
    bomb = hostile(tmp_path, adapter, ("a/tokenizer.json", b"\0" * (4 * 1024 * 1024)))
    assert bomb.stat().st_size < 100_000  # a small file...
    root = tmp_path / "LoRA"
    with pytest.raises(BundleError) as err:
        bundles.import_adapter_zip(bomb, root)  # ...that would expand past the cap
    assert err.value.code == "zip_too_large" and listing(root) == []
    monkeypatch.setattr(bundles, "_plan", lambda archive, name: {i.filename.split("/")[-1]: i
                                                                 for i in archive.infolist()})  # fmt: skip
    with pytest.raises(BundleError) as err:  # headers that lie: the bytes are counted as they are unpacked
        bundles.import_adapter_zip(bomb, root)
    assert err.value.code == "zip_too_large" and listing(root) == []
