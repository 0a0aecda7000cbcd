"""An open page's cost: Chromium's CPU time while a page of `python app.py` sits on the Dataset tab, on the Train
tab with nothing running, and on the Train tab following the demo training; and that training's time with the
page following it, against the same training started through the API with no page open (the peer), alternating.

    .venv/bin/python bench/page.py [--runs 2]

One app process over a temporary data home with the demo model; headless Chromium driven by Playwright (the
requirements-dev.txt packages and /usr/bin/chromium, as the browser tests). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cpu_by_process import group, snapshot  # noqa: E402 (bench/cpu_by_process.py, beside this script)
from startup import free_port  # noqa: E402 (bench/startup.py)

CHROMIUM = "/usr/bin/chromium"
IDLE_S = 15.0


def chromium_cpu() -> float:
    """CPU seconds of the Chromium processes running now (on an otherwise idle machine, this script's)."""
    seen: dict[str, list] = {}
    snapshot(seen)
    return sum(cpu for cpu, command, parent in seen.values() if group(command, parent) == "Chromium")


THREADS: dict[str, list[int]] = {"api": [], "page": []}  # the training's threads, read every 0.5 s


def follow(client, task: str, seen: list[int], timeout: float = 600.0) -> dict:
    """The app's status, read every 0.5 s until the run of ``task`` has ended (a click's run may take a moment to
    show: until then the status is the last run's)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.predict(api_name="/training_status")
        if status.get("task") == task and status["state"] in ("completed", "stopped", "failed"):
            return status
        if status["state"] == "running" and status.get("threads"):
            seen.append(int(status["threads"]))
        time.sleep(0.5)
    raise RuntimeError("the training did not end")


def api_run(client, task: str) -> float:
    """The demo training started through the API, no page open: seconds from Start to its end."""
    from gradio_client import handle_file

    from lora_core import demo

    client.predict(file=handle_file(str(demo.SAMPLE_DATASET)), api_name="/validate_dataset")
    settings = dict(demo.DEMO_TRAINING)
    preset = settings.pop("targets")
    started = time.monotonic()
    client.predict(base_name=demo.DEMO_MODEL_NAME, task=task, preset=preset, **settings, api_name="/start_training")
    status = follow(client, task, THREADS["api"])
    assert status["state"] == "completed", status
    return time.monotonic() - started


def page_run(browser, url: str, client, task: str) -> dict:
    """The same training clicked in a page that stays on the Train tab; Chromium's CPU on the way."""
    from playwright.sync_api import expect

    from webui.i18n import t

    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(url)
        expect(page.locator("#tab-dataset-button")).to_be_visible(timeout=60_000)
        dataset = page.locator("#tab-dataset")
        dataset.get_by_role("button", name=t("use_sample", "en")).click()
        expect(dataset).to_contain_text("48 rows, all valid", timeout=30_000)
        page.wait_for_timeout(3_000)  # what the load and the upload left to do
        before = chromium_cpu()
        page.wait_for_timeout(IDLE_S * 1000)
        dataset_idle = chromium_cpu() - before
        page.click("#tab-train-button")
        train = page.locator("#tab-train")
        train.get_by_role("button", name=t("demo_settings", "en")).click()
        train.get_by_label(t("task_name", "en")).fill(task)
        page.wait_for_timeout(3_000)
        before = chromium_cpu()
        page.wait_for_timeout(IDLE_S * 1000)
        train_idle = chromium_cpu() - before
        before, started = chromium_cpu(), time.monotonic()
        train.get_by_role("button", name=t("start", "en")).click()
        status = follow(client, task, THREADS["page"])
        took = time.monotonic() - started
        assert status["state"] == "completed", status
        running = chromium_cpu() - before
    finally:
        context.close()
    return {"took": took, "dataset_idle": dataset_idle / IDLE_S, "train_idle": train_idle / IDLE_S,
            "running": running / took}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    from lora_core.demo import DEMO_MODEL_NAME, build_demo_model

    with tempfile.TemporaryDirectory() as home:
        build_demo_model(Path(home) / "Models" / "LLM" / DEMO_MODEL_NAME)
        port = free_port()
        env = {**os.environ, "SIMPLE_LORA_HOME": home, "HF_HUB_OFFLINE": "1"}
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 120
            while True:
                try:
                    client = Client(url, verbose=False)
                    break
                except Exception:  # noqa: BLE001 (not serving yet)
                    if app.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
                api_run(client, "warm_up")  # the first training of a process pays for imports
                api, page = [], []
                for run in range(args.runs):
                    api.append(api_run(client, f"api_{run}"))
                    page.append(page_run(browser, url, client, f"page_{run}"))
                    print(f"run {run + 1}: no page {api[-1]:.1f} s, page {page[-1]['took']:.1f} s", flush=True)
                browser.close()
        finally:
            app.terminate()
            app.wait(15)

    def median(key: str) -> float:
        return statistics.median(p[key] for p in page)

    no_page = statistics.median(api)
    print(f"\nThe demo training (240 steps, samples and its evaluation card), medians of {args.runs}:")
    print("| started | s to its end | ratio |\n|---|---:|---:|")
    print(f"| through the API, no page open | {no_page:.1f} | 1.00x |")
    print(f"| in a page that follows it | {median('took'):.1f} | {median('took') / no_page:.2f}x |")
    print("\nChromium's CPU (cores) while the page:")
    print("| page | cores |\n|---|---:|")
    print(f"| sits on the Dataset tab | {median('dataset_idle'):.3f} |")
    print(f"| sits on the Train tab, nothing running | {median('train_idle'):.3f} |")
    print(f"| follows the training | {median('running'):.3f} |")
    for name, seen in THREADS.items():
        fewer = sum(n < max(seen) for n in seen) / len(seen) if seen else 0.0
        print(f"training threads ({name}): {sorted(set(seen))}, fewer than the most in {fewer:.0%} of the readings")


if __name__ == "__main__":
    main()
