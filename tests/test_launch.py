"""Launch modes: loopback needs no password; anything reachable from other machines always needs one."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tiny import free_port

import app
from lora_core.demo import build_demo_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    build_demo_model(root / "Models" / "LLM" / "demo")
    return root


def start(home: Path, *args: str) -> tuple[subprocess.Popen, int, list[str]]:
    port = free_port()
    env = dict(os.environ, SIMPLE_LORA_HOME=str(home), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if "Running on local URL" in line:
            return proc, port, lines
    proc.kill()
    pytest.fail("the app did not start:\n" + "".join(lines))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_loopback_serves_without_a_password(home):
    proc, port, lines = start(home)
    try:
        assert not any("password" in line for line in lines)
        assert httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).status_code == 200
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_public_bind_without_auth_generates_a_password_and_requires_it(home):
    proc, port, lines = start(home, "--host", "0.0.0.0")
    try:
        said = "".join(lines)
        password = re.search(r"log in as 'admin' with password (\S+)", said).group(1)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/config", timeout=10).status_code == 401
        api = httpx.post(f"{base}/gradio_api/call/scan_adapters", json={"data": ["en", None]}, timeout=10)
        assert api.status_code == 401  # the API is closed like the page
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/login", data={"username": "admin", "password": "wrong"}).status_code >= 400
            assert client.post("/login", data={"username": "admin", "password": password}).status_code == 200
            assert client.get("/config").status_code == 200
    finally:
        stop(proc)


def test_auth_rules():
    assert app.launch_auth(app.parse_args([])) is None
    assert app.launch_auth(app.parse_args(["--auth", "ada:s3cret"])) == ("ada", "s3cret")
    for args in (["--share"], ["--host", "0.0.0.0"], ["--host", "192.168.1.5"]):
        user, password = app.launch_auth(app.parse_args(args))
        assert user == "admin" and len(password) >= 12
    with pytest.raises(SystemExit):
        app.launch_auth(app.parse_args(["--auth", "no-colon"]))
