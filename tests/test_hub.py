"""Base models from the Hub, tested against a Hub of our own on 127.0.0.1 (tests/hub_server.py): huggingface_hub's
real client code runs; only the server is local."""

from __future__ import annotations

import json

import huggingface_hub.constants
import pytest
from hub_server import LocalHub

from lora_core import hub
from lora_core.errors import HubError, ModelError
from lora_core.models import list_base_models, source_of


@pytest.fixture()
def local_hub(tmp_path, monkeypatch, demo_model):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the download is asked for
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path / "home"))
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add_folder("acme/tiny-chat", demo_model)
        yield server


def test_a_model_is_downloaded_with_only_what_a_model_needs(local_hub, tmp_path, demo_model) -> None:
    repo = local_hub.repos["acme/tiny-chat"]
    repo.files["pytorch_model.bin"] = b"\x80\x04 never fetched"
    repo.files["README.md"] = b"# card"
    repo.__post_init__()
    seen = []
    folder = hub.download_model("acme/tiny-chat", progress=lambda done, total: seen.append((done, total)))
    assert folder == tmp_path / "home" / "Models" / "LLM" / "tiny-chat" and list_base_models() == [folder]
    assert (folder / "model.safetensors").read_bytes() == (demo_model / "model.safetensors").read_bytes()
    fetched = {f.split("/", 2)[2] for f in local_hub.fetched}
    assert "pytorch_model.bin" not in fetched and "README.md" not in fetched  # pickle and cards never fetched
    assert source_of(folder) == {"repo_id": "acme/tiny-chat", "commit": repo.commit}
    assert seen[-1][0] == seen[-1][1] > 0  # progress reached the whole size
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".download-")]
    with pytest.raises(ModelError) as err:
        hub.download_model("acme/tiny-chat")
    assert err.value.code == "model_exists"


def test_a_download_broken_off_mid_file_resumes(local_hub, tmp_path) -> None:
    local_hub.drop_once.add("acme/tiny-chat/model.safetensors")
    try:
        folder = hub.download_model("acme/tiny-chat")
    except HubError as exc:  # the client gave up this time: the next try resumes from what it has
        assert exc.code == "hub_interrupted" and "start it again" in exc.message
        folder = hub.download_model("acme/tiny-chat")
    data = local_hub.repos["acme/tiny-chat"].files["model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == data
    assert local_hub.fetched.count("acme/tiny-chat/model.safetensors") == 2  # once broken, once the rest


def test_a_repo_with_only_pickle_weights_is_refused_before_any_weight_is_fetched(local_hub) -> None:
    local_hub.add("acme/old-model", {"config.json": b'{"model_type": "llama"}', "pytorch_model.bin": b"\x80\x04"})
    with pytest.raises(HubError) as err:
        hub.download_model("acme/old-model")
    assert err.value.code == "hub_no_safetensors" and "pytorch_model.bin" in err.value.message
    assert local_hub.fetched == []


def test_a_gated_repo_needs_a_token_that_is_never_stored(local_hub, tmp_path) -> None:
    local_hub.repos["acme/tiny-chat"].gated = True
    with pytest.raises(HubError) as err:
        hub.download_model("acme/tiny-chat")
    assert err.value.code == "hub_gated" and err.value.message.count(".") == 1 and local_hub.fetched == []
    with pytest.raises(HubError) as err:  # a wrong token: refused by the Hub, said the same way
        hub.download_model("acme/tiny-chat", token="hf_wrong")
    assert err.value.code == "hub_gated"
    folder = hub.download_model("acme/tiny-chat", token="hf_good_token")
    home = tmp_path / "home"
    assert not [p for p in home.rglob("*") if p.is_file() and b"hf_good_token" in p.read_bytes()]  # nowhere
    assert "hf_good_token" not in json.dumps(source_of(folder))


@pytest.mark.parametrize("repo, code", [("nobody/nothing", "hub_not_found"), ("no-slash", "hub_bad_repo"),
                                        ("a/b/c", "hub_bad_repo"), ("", "hub_bad_repo")])  # fmt: skip
def test_a_repo_that_is_not_there_is_one_sentence(local_hub, repo, code) -> None:
    with pytest.raises(HubError) as err:
        hub.download_model(repo)
    assert err.value.code == code and "\n" not in err.value.message


def test_custom_code_needs_the_opt_in_and_a_full_disk_is_said(local_hub, monkeypatch) -> None:
    config = json.dumps({"model_type": "my_own_arch", "auto_map": {"AutoModel": "x.Model"}}).encode()
    local_hub.add("acme/custom", {"config.json": config, "model.safetensors": b"x" * 100})
    with pytest.raises(ModelError) as err:
        hub.download_model("acme/custom")
    assert err.value.code == "remote_code_required"
    monkeypatch.setattr(hub.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    with pytest.raises(HubError) as err:
        hub.download_model("acme/tiny-chat")
    assert err.value.code == "hub_no_space" and "10 bytes is free" in err.value.message


@pytest.mark.slow
def test_the_page_lists_and_downloads_a_model_whose_token_never_shows(tmp_path, demo_model) -> None:
    from gradio_client import Client
    from tiny import served_app

    home = tmp_path / "served"
    home.mkdir()
    with LocalHub() as server:
        server.add_folder("acme/tiny-chat", demo_model, gated=True)
        with served_app(home, env={"HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0"}) as app:
            import httpx

            assert httpx.get(f"{app.url}config", timeout=10).json()["run_history"] is False  # no inputs kept
            client = Client(app.url, verbose=False)
            with pytest.raises(Exception, match="is gated"):
                client.predict(repo_id="acme/tiny-chat", revision="", token="", api_name="/hub_files")
            files, summary = client.predict(repo_id="acme/tiny-chat", revision="", token="hf_good_token",
                                            api_name="/hub_files")  # fmt: skip
            assert "model.safetensors" in json.dumps(files) and "files" in summary
            status = client.predict(repo_id="acme/tiny-chat", revision="", name="", token="hf_good_token",
                                    api_name="/download_model")  # fmt: skip
            assert "tiny-chat" in status
            assert "Chat uses base model" in client.predict(base_name="tiny-chat", adapter="",
                                                            api_name="/load_chat_model")  # fmt: skip
            log = app.output()
    assert "hf_good_token" not in log
    assert not [p for p in home.rglob("*") if p.is_file() and b"hf_good_token" in p.read_bytes()]


@pytest.mark.slow
def test_an_adapter_of_a_downloaded_base_names_it_by_its_hub_id(local_hub, tmp_path) -> None:
    from lora_core import adapters
    from lora_core.demo import SAMPLE_DATASET
    from lora_core.training import State, TrainConfig, TrainingJob

    folder = hub.download_model("acme/tiny-chat")
    snap = TrainingJob(TrainConfig(base=str(folder), data=str(SAMPLE_DATASET), task="hub", max_steps=2, samples=0,
                                   eval_rows=0)).run()  # fmt: skip
    assert snap["state"] == State.COMPLETED, snap
    adapter = snap["adapter_dir"]
    config = adapters.read_adapter_config(adapter)
    assert config["base_model_name_or_path"] == "acme/tiny-chat"  # loads anywhere the Hub is
    manifest = adapters.read_manifest(adapter)
    assert (manifest.base_repo_id, manifest.base_commit) == (
        "acme/tiny-chat",
        local_hub.repos["acme/tiny-chat"].commit,
    )
    assert adapters.base_for_adapter(adapter) == folder.resolve()


def test_a_push_holds_exactly_the_adapter_files_and_its_card(local_hub, tmp_path) -> None:
    from tiny import tiny_peft_model

    from lora_core.adapters import save_adapter
    from lora_core.demo import build_tokenizer
    from lora_core.manifest import DatasetInfo, Manifest

    manifest = Manifest(status="completed", task="pushme", loss_history=[[1, 3.0], [2, 2.0]], steps=2,
                        dataset=DatasetInfo(name="mine.json", sha256="ab" * 32, rows_total=10, train_examples=9),
                        hyperparameters={"rank": 4, "learning_rate": 0.001})  # fmt: skip
    adapter = save_adapter(tiny_peft_model(), build_tokenizer(), manifest, tmp_path / "pushme_1")
    with pytest.raises(HubError) as err:
        hub.push_adapter(adapter, "me/pushme", token="")
    assert err.value.code == "hub_push_token"
    with pytest.raises(HubError) as err:
        hub.push_adapter(adapter, "me/pushme", token="hf_wrong")
    assert err.value.code == "hub_push_failed" and local_hub.pushes == []
    url = hub.push_adapter(adapter, "me/pushme", token="hf_good_token")
    [push] = local_hub.pushes
    assert url.endswith(f"/me/pushme/commit/{local_hub.repos['me/pushme'].commit}")
    assert local_hub.created == {"me/pushme": True}  # private by default
    adapter_files = {p.name: p.read_bytes() for p in adapter.iterdir()}
    assert set(push["files"]) == set(adapter_files) | {"README.md", "loss_curve.png"}
    assert all(push["files"][name] == data for name, data in adapter_files.items())
    card = push["files"]["README.md"].decode()
    for fact in ("library_name: peft", "mine.json", "ab" * 32, "| rank | 4 |", "PeftModel.from_pretrained",
                 '"me/pushme"', "![loss curve](loss_curve.png)", "| method | sft |"):  # fmt: skip
        assert fact in card, fact
    assert push["files"]["loss_curve.png"].startswith(b"\x89PNG")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"hf_good_token" in p.read_bytes()]


def test_a_merged_model_leaves_as_a_zip_or_a_push_only_when_it_fits_the_cap(local_hub, tmp_path, monkeypatch) -> None:
    import zipfile

    from lora_core import bundles, paths
    from lora_core.files import write_json
    from lora_core.storage import MERGED_MARK

    folder = paths.own_llm_dir() / "mine-merged"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 5000)
    write_json(folder / "config.json", {"model_type": "llama"})
    write_json(folder / MERGED_MARK, {"adapter": "mine_1", "base": "tiny", "base_repo_id": "acme/tiny-chat"})
    (paths.own_llm_dir() / "plain").mkdir()  # a base model it did not merge never leaves this way
    for name in ("plain", "../mine-merged", ""):
        with pytest.raises(Exception) as err:
            bundles.zip_merged(name, tmp_path / "out")
        assert err.value.code == "no_such_merged"
    archive = bundles.zip_merged("mine-merged", tmp_path / "out")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"mine-merged/{p.name}" for p in folder.iterdir())
        assert z.getinfo("mine-merged/model.safetensors").compress_type == zipfile.ZIP_STORED
    url = hub.push_merged("mine-merged", "me/merged", token="hf_good_token")
    [push] = local_hub.pushes
    assert url.endswith(f"/me/merged/commit/{local_hub.repos['me/merged'].commit}")
    assert set(push["files"]) == {p.name for p in folder.iterdir()} | {"README.md"}
    card = push["files"]["README.md"].decode()
    assert "base_model: acme/tiny-chat" in card and 'from_pretrained("me/merged")' in card and "mine_1" in card
    monkeypatch.setattr(bundles, "MAX_UNPACKED_BYTES", 4096)
    for leave in (lambda: bundles.zip_merged("mine-merged", tmp_path / "out2"),
                  lambda: hub.push_merged("mine-merged", "me/merged2", token="hf_good_token")):  # fmt: skip
        with pytest.raises(Exception) as err:
            leave()
        assert err.value.code == "merged_too_large" and "mine-merged" in err.value.message
    assert len(local_hub.pushes) == 1 and not (tmp_path / "out2").exists()


def test_a_pushed_adapter_with_an_evaluation_card_carries_it_in_its_model_card(local_hub, tmp_path) -> None:
    from test_report import card as evaluation_card
    from tiny import tiny_peft_model

    from lora_core.adapters import save_adapter
    from lora_core.demo import build_tokenizer
    from lora_core.evaluation import save_evaluation
    from lora_core.manifest import Manifest, read_manifest

    manifest = Manifest(status="completed", task="carded", loss_history=[[1, 3.0], [2, 2.0]], steps=2)
    adapter = save_adapter(tiny_peft_model(), build_tokenizer(), manifest, tmp_path / "carded_1")
    save_evaluation(adapter, evaluation_card())
    assert read_manifest(adapter).evaluation["file"] == "eval.json"  # listed in the manifest
    hub.push_adapter(adapter, "me/carded", token="hf_good_token")
    [push] = local_hub.pushes
    assert {"eval.json", "eval_card.png", "README.md", "loss_curve.png"} <= set(push["files"])
    card = push["files"]["README.md"].decode()
    assert "## Evaluation" in card and "![evaluation card](eval_card.png)" in card and "### Forgetting probe" in card
    assert "| exact match | 0.000 | 0.500 |" in card
    assert push["files"]["eval_card.png"].startswith(b"\x89PNG")
