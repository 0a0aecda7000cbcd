"""Launch modes: loopback needs no password; anything reachable from other machines always needs one."""

import re
import socket
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from tiny import served_app

import app
from lora_core import models, paths

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def home(tmp_path_factory, install_demo):
    root = tmp_path_factory.mktemp("launch")
    install_demo(root / "Models" / "LLM" / "demo")
    return root


def outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_loopback_serves_without_a_password_and_only_to_this_machine(home):
    with served_app(home) as app:
        assert "password" not in app.output()
        assert httpx.get(f"{app.url}config", timeout=10).status_code == 200
        address = outward_address()
        if address:  # bound to 127.0.0.1: the machine's own network address does not answer
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{address}:{app.port}/config", timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], ["--share"]], ids=["public-bind", "share"])
def test_a_reachable_app_without_auth_generates_a_password_and_requires_it(home, args):
    # --share cannot reach the share server here (no network): the app says so and goes on serving locally,
    # behind the generated password all the same.
    with served_app(home, *args) as app:
        password = re.search(r"log in as 'admin' with password (\S+)", app.output()).group(1)
        base = f"http://127.0.0.1:{app.port}"
        assert httpx.get(f"{base}/config", timeout=10).status_code == 401
        api = httpx.post(f"{base}/gradio_api/call/scan_adapters", json={"data": ["en", None]}, timeout=10)
        assert api.status_code == 401  # the API is closed like the page
        with pytest.raises(Exception, match="(?i)auth|log ?in|401"):  # gradio_client too, without credentials
            Client(base, verbose=False)
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/login", data={"username": "admin", "password": "wrong"}).status_code >= 400
            assert client.post("/login", data={"username": "admin", "password": password}).status_code == 200
            assert client.get("/config").status_code == 200
        client = Client(base, auth=("admin", password), verbose=False)  # the documented way for API users
        _, _, said = client.predict("en", None, api_name="/scan_adapters")
        assert said == "Models/LoRA/: 0 usable, 0 invalid (folders: 0)."  # this home has no adapter yet


def test_auth_rules(tmp_path, monkeypatch):
    for name in ("SIMPLE_LORA_AUTH", "SIMPLE_LORA_AUTH_FILE", "SIMPLE_LORA_HOST", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert app.launch_auth(app.parse_args([])) is None
    assert app.launch_auth(app.parse_args(["--auth", "ada:s3cret"])) == [("ada", "s3cret")]
    for args in (["--share"], ["--host", "0.0.0.0"], ["--host", "192.168.1.5"]):
        [(user, password)] = app.launch_auth(app.parse_args(args))
        assert user == "admin" and len(password) >= 12
    with pytest.raises(SystemExit):
        app.launch_auth(app.parse_args(["--auth", "no-colon"]))
    secret = tmp_path / "secret"
    secret.write_text("\nada:pass:with:colons\n", encoding="utf-8")
    assert app.launch_auth(app.parse_args(["--auth-file", str(secret), "--share"])) == [("ada", "pass:with:colons")]
    secret.write_text("ada:one\n\nbob:two\n", encoding="utf-8")  # several users, each with a workspace
    assert app.launch_auth(app.parse_args(["--auth-file", str(secret)])) == [("ada", "one"), ("bob", "two")]
    monkeypatch.setenv("SIMPLE_LORA_AUTH", "env:pw")
    assert app.launch_auth(app.parse_args(["--host", "0.0.0.0"])) == [("env", "pw")]
    for bad in ("", "user-only\n", "ada:one\nada:two\n"):
        secret.write_text(bad, encoding="utf-8")
        with pytest.raises(SystemExit, match="user:password"):
            app.launch_auth(app.parse_args(["--auth-file", str(secret)]))
    with pytest.raises(SystemExit, match="cannot read"):
        app.launch_auth(app.parse_args(["--auth-file", str(tmp_path / "missing")]))


def test_a_space_binds_where_it_says_and_keeps_data_on_its_persistent_storage(tmp_path, monkeypatch):
    for name in ("SIMPLE_LORA_HOST", "SIMPLE_LORA_PORT", "SIMPLE_LORA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what a Space sets
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    args = app.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7861)
    storage = tmp_path / "data"
    monkeypatch.setattr(paths, "SPACE_STORAGE", storage)
    monkeypatch.setenv("SPACE_ID", "someone/simple-lora")
    assert paths.home() == paths.REPO_ROOT  # no persistent storage attached: the Space's own disk
    storage.mkdir()
    assert paths.home() == storage and paths.lora_dir() == storage / "Models" / "LoRA"
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(tmp_path / "mine"))
    assert paths.home() == tmp_path / "mine"  # an explicit home always wins
    monkeypatch.delenv("SIMPLE_LORA_HOME")
    monkeypatch.delenv("SPACE_ID")
    assert paths.home() == paths.REPO_ROOT  # /data on an ordinary machine is not ours


@pytest.mark.slow
@pytest.mark.parametrize("models", [True, False])
def test_the_page_is_built_without_importing_peft(home, tmp_path, models):
    """PEFT (with bitsandbytes), transformers and torch take seconds to import and no page needs them before it is
    served: the targets are listed by the page's load, and a CPU build of torch says it has no GPU by its version
    (bench/startup.py measures the whole start)."""
    import os
    import subprocess
    import sys
    from importlib.metadata import version

    heavy = ("peft", "transformers", "bitsandbytes", "torch")
    code = f"import gc, sys, app; print(gc.isenabled(), sorted(m for m in {heavy!r} if sys.modules.get(m)))"
    env = {**os.environ, "SIMPLE_LORA_HOME": str(home if models else tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    # the cycle collector is on again once the imports and the page are made (lora_core/memory.py, paused)
    heavy_imported = "[]" if version("torch").endswith("+cpu") else "['torch']"
    assert run.stdout.strip().splitlines()[-1] == f"True {heavy_imported}"


@pytest.mark.slow
@pytest.mark.skipif(models.device_kind() == "cuda", reason="bitsandbytes serves CUDA's 4- and 8-bit loading")
@pytest.mark.parametrize("torch_build", ["cpu", "cuda"])
def test_where_bitsandbytes_can_serve_nothing_peft_does_not_import_it(torch_build):
    """Without a GPU, bitsandbytes can load nothing (quantization needs CUDA), and PEFT's import of it took 0.85 s of
    every process that trains, chats or merges: PEFT and transformers see it absent, and a LoRA model is made as
    before. A CPU-only torch build is known at ``import lora_core``; a CUDA build on a machine without a GPU once
    ``device_kind`` has asked torch."""
    import subprocess
    import sys

    code = "\n".join([
        "import sys, importlib.metadata as meta",
        "real = meta.version",
        f"meta.version = lambda name: {'2.13.0+cpu' if torch_build == 'cpu' else '2.13.0'!r} if name == 'torch' "
        "else real(name)",  # the build's name, whichever torch is installed
        "import lora_core",
        "from lora_core import models",
        "print('before', sys.modules.get('bitsandbytes', 'absent'))",
        "print('device', models.device_kind())",
        "import peft, transformers, torch",
        "from peft import LoraConfig, get_peft_model",
        "from transformers import LlamaConfig, LlamaForCausalLM, Trainer",
        "config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,",
        "                     num_attention_heads=2, num_key_value_heads=1)",
        "model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=['q_proj']))",
        "print('lora', sum(p.numel() for p in model.parameters() if p.requires_grad))",
        "print('available', peft.import_utils.is_bnb_available(), transformers.utils.is_bitsandbytes_available())",
        "print('imported', sys.modules.get('bitsandbytes'), 'torch._inductor.compile_fx' in sys.modules)",
    ])  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    said = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    assert said["before"] == ("None" if torch_build == "cpu" else "absent")  # a CUDA build: only torch can tell
    assert said["device"] == "cpu" and said["lora"] == str(2 * 4 * 32)  # A and B of rank 4
    assert said["available"] == "False False" and said["imported"] == "None False"


def test_hiding_bitsandbytes_changes_nothing_once_peft_is_imported(monkeypatch):
    import sys

    import peft  # noqa: F401

    monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)
    models.hide_bitsandbytes()
    assert "bitsandbytes" not in sys.modules


def test_the_names_spelt_out_to_avoid_importing_peft_are_peft_s_own():
    from peft.utils import constants

    from lora_core import adapters, targets

    assert adapters.CONFIG_NAME == constants.CONFIG_NAME
    assert adapters.SAFETENSORS_WEIGHTS_NAME == constants.SAFETENSORS_WEIGHTS_NAME
    assert adapters.WEIGHTS_NAME == constants.WEIGHTS_NAME
    assert constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["llama"] == targets.DEFAULT_TARGETS


def test_opening_the_page_touches_few_of_its_components():
    """Gradio's page refreshes, at each change of any event's status, the loading status of every component an
    event has touched so far (its inputs and outputs), copying each one's properties: the events a page runs when
    it opens (the load events and what follows them) touch a few components, not the relabelled page (a relabel at
    load made every later event, the Train tab's ticks among them, twice as costly; BENCHMARKS.md, "An open
    page")."""
    config = app.demo.config
    deps = {d["id"]: d for d in config["dependencies"]}
    opening = {i for i, d in deps.items() if any(event == "load" for _, event in d["targets"])}
    while followers := {i for i, d in deps.items() if d["trigger_after"] in opening} - opening:
        opening |= followers
    touched = set().union(*(set(deps[i]["inputs"]) | set(deps[i]["outputs"]) for i in opening))
    assert len(opening) >= 5 and len(touched) <= 20, (len(opening), sorted(touched))  # 189 with the relabel
    assert len(config["components"]) > 200  # of a page this size


def test_the_app_polls_its_queue_gently_when_idle(home, monkeypatch):
    """Gradio's queue looks for waiting events every 1 ms and for progress every 10 ms, even in an app nobody uses
    (about 4.5% of a core here; BENCHMARKS.md, "Start-up"): the app's queue does so every 20 ms and 100 ms. Gradio's
    attribute names are checked too: a Gradio that renamed them would fail here, not at a user's start."""
    import gradio as gr

    from webui.guard import PROGRESS_POLL_S, QUEUE_POLL_S, poll_queue_gently

    launched = []
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(home))
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.append(self))
    app.main(["--port", "7999"])
    (served,) = launched
    queue = served._queue
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (QUEUE_POLL_S, PROGRESS_POLL_S)
    bare = gr.Blocks()
    bare.queue()
    assert bare._queue.sleep_when_free < QUEUE_POLL_S  # Gradio's own, faster
    bare._queue.sleep_when_free = 1.0
    poll_queue_gently(bare)
    assert bare._queue.sleep_when_free == 1.0  # never made faster
    assert bare._queue.progress_update_sleep_when_free == PROGRESS_POLL_S


def test_the_app_sends_no_analytics_and_checks_no_version(monkeypatch):
    """Gradio reports a Blocks app's creation and launch to its servers, and checks for a newer Gradio, unless told
    not to: the app is told not to (the page's config says so too), whatever the environment says."""
    from gradio import analytics

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    sent = []
    monkeypatch.setattr(analytics, "_do_analytics_request", lambda **kwargs: sent.append(kwargs))
    monkeypatch.setattr(analytics, "version_check", lambda: sent.append("version check"))
    built = app.build_app()
    assert built.analytics_enabled is False and built.config["analytics_enabled"] is False
    assert app.demo.config["analytics_enabled"] is False
    assert sent == []
