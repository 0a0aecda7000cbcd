"""Start-up: seconds from `python app.py` until the page answers, against a bare Gradio app started the same way
(the peer: what any Gradio app costs), alternating, several runs each; medians and their ratio. Then each app is
left alone for ``--idle`` seconds, no page open, and the CPU its process takes meanwhile is read (in cores: CPU
seconds per second): what an app nobody uses costs the machine.

    .venv/bin/python bench/startup.py [--runs 5] [--idle 10]

The data home is a temporary folder that already holds the demo model (a warm machine: packages cached by the
OS, the model built once before), so only the start itself is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE_APP = """import gradio as gr
with gr.Blocks() as demo:
    gr.Markdown("hello")
demo.launch(server_port={port})
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_serve(argv: list[str], port: int, env: dict, idle_s: float) -> tuple[float, float]:
    """Seconds until ``argv`` serves its page on ``port``, and the cores it then takes over ``idle_s`` seconds."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        served = time.perf_counter() - start
                        break
            except OSError:
                time.sleep(0.05)
        process = psutil.Process(proc.pid)
        time.sleep(1.0)  # what the first answer started settles
        before, begun = sum(process.cpu_times()[:2]), time.perf_counter()
        time.sleep(idle_s)
        return served, (sum(process.cpu_times()[:2]) - before) / (time.perf_counter() - begun)
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds each app is then left alone, measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, SIMPLE_LORA_HOME=home, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
        subprocess.run([sys.executable, "-m", "lora_core", "demo-model"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        bare = Path(home) / "bare_app.py"
        ours, peer = "Simple LoRA (python app.py)", "bare Gradio Blocks app"
        times: dict[str, list[float]] = {ours: [], peer: []}
        idle: dict[str, list[float]] = {ours: [], peer: []}
        for _ in range(args.runs):  # alternate, so that a busy moment hits both alike
            for name in (ours, peer):
                port = free_port()
                argv = [sys.executable, "app.py", "--port", str(port)]
                if name == peer:
                    bare.write_text(BARE_APP.format(port=port))
                    argv = [sys.executable, str(bare)]
                served, cores = time_to_serve(argv, port, env, args.idle)
                times[name].append(served)
                idle[name].append(cores)
    print(f"| program | median s to serve ({args.runs} runs) | min | max | ratio to bare Gradio "
          f"| idle CPU, cores ({args.idle:g} s, no page) | ratio to bare Gradio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in times:
        median, cores = statistics.median(times[name]), statistics.median(idle[name])
        print(f"| {name} | {median:.2f} | {min(times[name]):.2f} | {max(times[name]):.2f} "
              f"| {median / statistics.median(times[peer]):.2f}x | {cores:.3f} "
              f"| {cores / statistics.median(idle[peer]):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
