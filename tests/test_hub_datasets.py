"""Datasets from the Hub, tested against a Hub of our own on 127.0.0.1 (tests/hub_server.py): huggingface_hub's
real client code runs; only the server is local."""

from __future__ import annotations

import io
import json

import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import LocalHub

from lora_core import paths, storage
from lora_core.errors import HubError
from lora_core.hub_datasets import fetch_dataset

TRAIN = [{"question": "What is 2 + 2?", "answer": "4"}, {"question": "Capital of France?", "answer": "Paris"},
         {"question": "你好是什么意思？", "answer": "Hello."}]  # fmt: skip
TEST = [{"question": "What is 3 + 3?", "answer": "6"}]
README = b"""---
license: mit
configs:
- config_name: chat
  data_files:
  - split: train
    path: chat/train-*.jsonl
  - split: test
    path: [chat/test.jsonl]
- config_name: qa
  default: true
  data_files: "qa/*.csv"
---
# Two configs
"""


def parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def stored_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def uploads_left() -> list[str]:
    folder = paths.uploads_dir()
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture()
def local_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fetch is asked for
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path / "home"))
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add("acme/qa", {"data/train-00000-of-00001.parquet": parquet(TRAIN),
                               "data/test-00000-of-00001.parquet": parquet(TEST), "README.md": b"# plain card\n",
                               ".gitattributes": b"*.parquet filter=lfs"}, repo_type="dataset")  # fmt: skip
        server.add("acme/two-configs", {"README.md": README,
                                        "chat/train-0.jsonl": jsonl(TRAIN[:2]), "chat/train-1.jsonl": jsonl(TRAIN[2:]),
                                        "chat/test.jsonl": jsonl(TEST),
                                        "qa/part.csv": b"question,answer\nWho?,Me\nWhy?,Because\n"},
                   repo_type="dataset")  # fmt: skip
        yield server


def test_a_parquet_train_split_is_stored_as_one_jsonl_upload_with_its_source(local_hub) -> None:
    repo = local_hub.datasets["acme/qa"]
    seen = []
    fetched = fetch_dataset("acme/qa", progress=lambda done, total: seen.append((done, total)))
    assert fetched.path.parent == paths.uploads_dir() and fetched.path.suffix == ".jsonl"
    assert stored_rows(fetched.path) == TRAIN and fetched.rows == 3
    assert (fetched.name, fetched.config, fetched.split) == ("acme/qa", "default", "train")
    assert fetched.commit == repo.commit and fetched.files == ["data/train-00000-of-00001.parquet"]
    size = len(repo.files["data/train-00000-of-00001.parquet"])
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert "datasets/acme/qa/data/test-00000-of-00001.parquet" not in local_hub.fetched  # only the split's file
    assert [s.path for s in storage.uploads()] == [fetched.path]  # no scratch folder or part file left
    assert uploads_left() == sorted([fetched.path.name, storage.meta_path(fetched.path).name])
    assert storage.upload_meta(fetched.path) == {
        "name": "acme/qa",
        "source": {"hub": "acme/qa", "config": "default", "split": "train", "commit": repo.commit,
                   "files": ["data/train-00000-of-00001.parquet"]},
    }  # fmt: skip
    assert oct(fetched.path.stat().st_mode & 0o777) == "0o600"
    test = fetch_dataset("acme/qa", split="test", revision=repo.commit)
    assert stored_rows(test.path) == TEST and test.name == "acme/qa (default, test)"


def test_a_readme_config_is_chosen_by_name_or_as_the_default(local_hub) -> None:
    chat = fetch_dataset("acme/two-configs", config="chat")
    assert stored_rows(chat.path) == TRAIN and chat.files == ["chat/train-0.jsonl", "chat/train-1.jsonl"]
    assert chat.name == "acme/two-configs (chat, train)"
    assert stored_rows(fetch_dataset("acme/two-configs", config="chat", split="test").path) == TEST
    default = fetch_dataset("acme/two-configs")  # qa is marked default: its csv, all train
    assert default.config == "qa" and default.name == "acme/two-configs" and default.files == ["qa/part.csv"]
    csv_rows = [{"question": "Who?", "answer": "Me"}, {"question": "Why?", "answer": "Because"}]
    assert stored_rows(default.path) == csv_rows
    stored = set(uploads_left())
    with pytest.raises(HubError) as err:
        fetch_dataset("acme/two-configs", config="nope")
    assert err.value.code == "hub_dataset_no_config" and "chat, qa" in err.value.message
    assert set(uploads_left()) == stored


def test_a_repo_or_revision_that_is_not_there_is_one_sentence_and_leaves_nothing(local_hub) -> None:
    for repo, revision in (("nobody/nothing", None), ("acme/qa", "no-such-branch")):
        with pytest.raises(HubError) as err:
            fetch_dataset(repo, revision=revision)
        assert err.value.code == "hub_dataset_not_found" and repo in err.value.message
        assert "\n" not in err.value.message and err.value.message.count(". ") == 0
    assert uploads_left() == [] and local_hub.fetched == []


def test_a_split_with_no_files_names_the_files_there_are(local_hub) -> None:
    with pytest.raises(HubError) as err:
        fetch_dataset("acme/qa", split="validation")
    assert err.value.code == "hub_no_split" and "data/train-00000-of-00001.parquet" in err.value.message
    assert ".gitattributes" not in err.value.message and "README.md" not in err.value.message
    with pytest.raises(HubError) as err:
        fetch_dataset("acme/two-configs", config="qa", split="test")
    assert err.value.code == "hub_no_split" and "qa/part.csv" in err.value.message
    assert uploads_left() == []


def test_a_dataset_over_the_limit_is_refused_before_its_files_are_fetched(local_hub, monkeypatch) -> None:
    size = len(local_hub.datasets["acme/qa"].files["data/train-00000-of-00001.parquet"])
    with pytest.raises(HubError) as err:
        fetch_dataset("acme/qa", max_bytes=size - 1)
    assert err.value.code == "hub_dataset_too_large" and "acme/qa (train)" in err.value.message
    monkeypatch.setenv("SIMPLE_LORA_MAX_UPLOAD_MB", str((size - 1) / 1024 / 1024))  # the upload cap by default
    with pytest.raises(HubError) as err:
        fetch_dataset("acme/qa")
    assert err.value.code == "hub_dataset_too_large"
    assert not [f for f in local_hub.fetched if f.endswith(".parquet")] and uploads_left() == []


@pytest.mark.parametrize("repo", ["../../etc", "a/b/c", "x" * 150 + "/" + "y" * 150, "", "no-slash"])
def test_a_hostile_or_malformed_id_is_refused_before_the_hub_is_asked(local_hub, repo) -> None:
    with pytest.raises(HubError) as err:
        fetch_dataset(repo)
    assert err.value.code == "hub_bad_repo" and local_hub.fetched == [] and uploads_left() == []


def test_a_gated_dataset_needs_a_token_and_an_unreachable_hub_is_said(local_hub, monkeypatch) -> None:
    local_hub.datasets["acme/qa"].gated = True
    for token in (None, "hf_wrong"):
        with pytest.raises(HubError) as err:
            fetch_dataset("acme/qa", token=token)
        assert err.value.code == "hub_gated"
    assert stored_rows(fetch_dataset("acme/qa", token="hf_good_token").path) == TRAIN
    assert not [p for p in paths.home().rglob("*") if p.is_file() and b"hf_good_token" in p.read_bytes()]
    with LocalHub() as gone:
        url = gone.url
    monkeypatch.setenv("HF_ENDPOINT", url)  # a server that has stopped
    with pytest.raises(HubError) as err:
        fetch_dataset("acme/qa")
    assert err.value.code == "hub_unreachable" and "\n" not in err.value.message


def test_model_repos_and_dataset_repos_of_the_same_id_stay_apart(local_hub) -> None:
    from huggingface_hub import HfApi

    local_hub.add("acme/qa", {"config.json": b"{}"})
    api = HfApi(endpoint=local_hub.url, token=False)
    assert [s.rfilename for s in api.model_info("acme/qa").siblings] == ["config.json"]
    assert "data/train-00000-of-00001.parquet" in [s.rfilename for s in api.dataset_info("acme/qa").siblings]
    assert fetch_dataset("acme/qa").rows == 3


def test_a_file_that_cannot_be_read_or_stored_leaves_nothing_in_uploads(local_hub, monkeypatch) -> None:
    from lora_core.errors import DatasetError, StorageError

    local_hub.add("acme/broken", {"train.parquet": b"PAR1 cut short"}, repo_type="dataset")
    with pytest.raises(DatasetError) as err:
        fetch_dataset("acme/broken")
    assert err.value.code == "parquet_unreadable" and uploads_left() == []
    monkeypatch.setenv("SIMPLE_LORA_UPLOADS_QUOTA_MB", "0.00001")  # about 10 bytes
    with pytest.raises(StorageError) as err:
        fetch_dataset("acme/qa")
    assert err.value.code == "uploads_quota" and uploads_left() == []


def test_empty_float_cells_are_stored_as_null_and_a_stored_file_stays_within_the_cap(local_hub) -> None:
    rows = [{"question": "Who?", "score": float("nan")}, {"question": "Why?", "score": 1.5}]
    local_hub.add("acme/nan", {"data/train.parquet": parquet(rows)}, repo_type="dataset")
    fetched = fetch_dataset("acme/nan")
    assert stored_rows(fetched.path) == [{"question": "Who?", "score": None}, {"question": "Why?", "score": 1.5}]
    # Parquet packs repeated text tightly; the JSON Lines it becomes is checked against the cap before it is written
    long_rows = [{"question": "why " * 500, "answer": "because " * 500}] * 200
    local_hub.add("acme/packed", {"data/train.parquet": parquet(long_rows)}, repo_type="dataset")
    packed = len(local_hub.datasets["acme/packed"].files["data/train.parquet"])
    before = uploads_left()
    with pytest.raises(HubError) as info:
        fetch_dataset("acme/packed", max_bytes=packed * 4)
    assert info.value.code == "hub_dataset_too_large" and uploads_left() == before
