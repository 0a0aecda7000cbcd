"""Start-up: seconds from `python app.py` until the page answers, against a bare Gradio app started the same way
(the peer: what any Gradio app costs), alternating, several runs each; medians and their ratio.

    .venv/bin/python bench/startup.py [--runs 5]

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


def time_to_serve(argv: list[str], port: int, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, SIMPLE_LORA_HOME=home, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
        subprocess.run([sys.executable, "-m", "lora_core", "demo-model"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        bare = Path(home) / "bare_app.py"
        times: dict[str, list[float]] = {"Simple LoRA (python app.py)": [], "bare Gradio Blocks app": []}
        for _ in range(args.runs):  # alternate, so that a busy moment hits both alike
            port = free_port()
            times["Simple LoRA (python app.py)"].append(
                time_to_serve([sys.executable, "app.py", "--port", str(port)], port, env)
            )
            port = free_port()
            bare.write_text(BARE_APP.format(port=port))
            times["bare Gradio Blocks app"].append(time_to_serve([sys.executable, str(bare)], port, env))
    peer = statistics.median(times["bare Gradio Blocks app"])
    print(f"| program | median s to serve ({args.runs} runs) | min | max | ratio to bare Gradio |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {max(values):.2f} | {median / peer:.2f}x |")


if __name__ == "__main__":
    main()
