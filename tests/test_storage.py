"""What users leave on the disk: uploads kept privately and once, quotas, and deleting uploads and merged models."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from lora_core import paths, storage
from lora_core.data import load_records
from lora_core.demo import SAMPLE_DATASET
from lora_core.errors import PathError, StorageError
from webui import dataset_tab


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def gradio_copy(tmp_path: Path, monkeypatch) -> Path:
    """An upload as Gradio leaves it: a copy in a folder of its own inside its cache folder."""
    cache = tmp_path / "gradio_cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    copy = cache / "f00d" / "my data.json"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(SAMPLE_DATASET, copy)
    return copy


def test_an_upload_is_stored_once_privately_and_gradios_copy_is_removed(home, tmp_path, monkeypatch) -> None:
    copy = gradio_copy(tmp_path, monkeypatch)
    report = load_records(copy)
    stored = dataset_tab.store_upload(copy, report.sha256, report.name)
    assert stored.parent == home / "Uploads" and stored.read_bytes() == SAMPLE_DATASET.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert not copy.exists() and not copy.parent.exists()  # no second copy left in Gradio's cache
    assert [s.name for s in storage.uploads()] == [stored.name]


def test_an_upload_over_the_quota_is_refused_and_nothing_is_written(home, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SIMPLE_LORA_UPLOADS_QUOTA_MB", "0.001")  # about 1 KB
    copy = gradio_copy(tmp_path, monkeypatch)
    with pytest.raises(StorageError) as err:
        dataset_tab.store_upload(copy, load_records(copy).sha256, copy.name)
    assert err.value.code == "uploads_quota" and "1.0 KB quota" in err.value.message
    assert not (home / "Uploads").exists() or not any((home / "Uploads").iterdir())


def test_uploads_and_merged_models_are_deleted_by_name_and_only_those(home) -> None:
    uploads = home / "Uploads"
    uploads.mkdir(parents=True)
    (uploads / "abc.json").write_text("[]")
    storage.delete_upload("abc.json")
    assert not (uploads / "abc.json").exists()
    with pytest.raises(PathError):
        storage.delete_upload("../../etc/passwd")
    base, merged = home / "Models" / "LLM" / "base", home / "Models" / "LLM" / "mine-merged"
    for folder in (base, merged):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (merged / storage.MERGED_MARK).write_text(json.dumps({"adapter": "a", "base": "base"}))
    assert [m.name for m in storage.merged_models()] == ["mine-merged"]
    with pytest.raises(PathError) as err:
        storage.delete_merged("base")  # a base model it did not merge is never deleted
    assert err.value.code == "no_such_merged" and base.is_dir()
    storage.delete_merged("mine-merged")
    assert not merged.exists()


def test_each_workspace_has_its_own_uploads(home) -> None:
    with paths.as_user("ada"):
        paths.uploads_dir().mkdir(parents=True)
        (paths.uploads_dir() / "a.json").write_text("[]")
        assert [s.name for s in storage.uploads()] == ["a.json"]
    with paths.as_user("bob"):
        assert storage.uploads() == []
        with pytest.raises(PathError):
            storage.delete_upload("a.json")
    assert (home / "Users" / "ada" / "Uploads" / "a.json").is_file()
