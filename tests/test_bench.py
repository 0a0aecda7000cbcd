"""The GPU benchmark script keeps working where there is no GPU to run it: its --smoke mode builds a tiny model of
the same architecture from a small CPU fixture and trains it with Simple LoRA, reporting the same table. The
evaluation benchmark runs, and its three ways give the same replies. The CPU-by-process sampler counts a process
by what it runs, counts only the command's own processes and passes its exit status on."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from tiny import ROOT


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "fixture"
    run = subprocess.run(
        [sys.executable, "bench/fixture.py", "--out", str(out), "--rows", "40"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return out


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_smoke_configuration(fixture, tmp_path):
    work = tmp_path / "work"
    run = subprocess.run(
        [sys.executable, "bench/train_gpu.py", "--smoke", "--configs", "simple-16bit", "--rows", "16", "--runs", "1",
         "--fixture", str(fixture), "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    import torch

    label = "16-bit (bf16)" if torch.cuda.is_available() else "unquantized (fp32 on CPU)"
    assert f"| Simple LoRA, {label} |" in run.stdout and "not a measurement" in run.stdout
    assert "kernels-community" not in run.stdout + run.stderr  # bitsandbytes is not imported to name its version
    (result,) = work.glob("results-*.json")
    report = json.loads(result.read_text(encoding="utf-8"))
    summary = report["summary"]["simple-16bit"]
    assert report["smoke"] and summary["steps"] == 2 and summary["tokens_per_s"] > 0
    assert summary["checkpointing"] is False  # Simple LoRA's default without a 4-bit base
    config = json.loads((work / "model-smoke" / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "qwen2" and config["vocab_size"] == 151936 and config["tie_word_embeddings"]


@pytest.mark.slow
def test_the_gpu_benchmark_says_what_it_needs(fixture, tmp_path):
    import torch

    def bench(*args):
        run = subprocess.run(
            [sys.executable, "bench/train_gpu.py", "--work", str(tmp_path), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode != 0 and "Traceback" not in run.stderr
        return run.stderr.strip()

    assert "No fixture in" in bench("--fixture", str(tmp_path / "none"))
    assert "Unknown configuration(s): fast" in bench("--fixture", str(fixture), "--configs", "fast", "--smoke")
    if not torch.cuda.is_available():
        assert bench("--fixture", str(fixture)).startswith("No CUDA GPU here")
    assert not list(tmp_path.glob("model*"))  # nothing built for a run that cannot happen
    limit = bench("--fixture", str(fixture), "--smoke", "--configs", "simple-16bit", "--max-minutes", "0.1")
    assert limit.endswith("No training finished within --max-minutes.")  # 6 s: the model is built, no training fits


@pytest.mark.slow
def test_the_evaluation_benchmark_gives_the_same_replies_every_way(demo_model):
    # 8 of the card's 20 rows and 6 of the probe's 12 prompts: every way still batches, pads and leaves (20 s -> 14 s)
    run = subprocess.run(
        [sys.executable, "bench/evaluation.py", "--base", str(demo_model), "--runs", "1", "--float64", "--rows", "8",
         "--prompts", "6"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("the same replies every way") == 3, run.stdout
    assert run.stdout.count("| Simple LoRA: both sides in one pass | ") == 2 and "torch.float64" in run.stdout
    assert "| Simple LoRA: the same, and the prompts' shared beginning computed once | " in run.stdout
    assert "the card: 8 rows and the probe's 6 prompts" in run.stdout
    for bad in (["--rows", "0"], ["--prompts", "13"], ["--runs", "0"]):
        refused = subprocess.run([sys.executable, "bench/evaluation.py", *bad], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        assert refused.returncode == 2 and "--rows 1 to 48" in refused.stderr and not refused.stdout, bad


@pytest.mark.slow
def test_the_step_profile_splits_the_operators_time_and_bounds_the_mfu(fixture, tmp_path):
    work = tmp_path / "work"
    run = subprocess.run(
        [sys.executable, "bench/profile_step.py", "--fixture", str(fixture), "--rows", "8", "--skip", "0",
         "--steps", "1", "--peak-repeats", "2", "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    (result,) = work.glob("profile-*.json")
    out = json.loads(result.read_text(encoding="utf-8"))
    assert len(out["steps"]) == 1 and out["steps"][0]["real"] > 0
    assert set(out["parts"]) == {"matrix products", "attention", "everything else"}
    assert sum(p["share"] for p in out["parts"].values()) == pytest.approx(1.0)
    assert sum(p["s"] for p in out["parts"].values()) == pytest.approx(out["ops_s"])
    # the products' FLOPs come from their shapes: a rate below the machine's peak, and a ceiling above the MFU
    assert out["product_gflops"] > 0 and 0 < out["product_vs_peak"] < 1.5
    assert 0 < out["mfu_ops"] < out["mfu_if_only_products"]
    assert "| matrix products |" in run.stdout and "if everything but the matrix products" in run.stdout

    missing = subprocess.run([sys.executable, "bench/profile_step.py", "--fixture", str(tmp_path / "nothing")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "run bench/fixture.py first" in missing.stderr
    assert "Traceback" not in missing.stderr
    refused = subprocess.run([sys.executable, "bench/profile_step.py", "--fixture", str(fixture), "--peak-repeats",
                              "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "--peak-repeats must be at least 1" in refused.stderr


@pytest.mark.slow
def test_the_demo_job_benchmark_times_two_checkouts_alike(tmp_path):
    work = tmp_path / "work"
    run = subprocess.run(
        [sys.executable, "bench/demo_job.py", "--against", str(ROOT), "--runs", "1", "--steps", "3", "--work",
         str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    (result,) = work.glob("demo-job-*.json")
    runs = json.loads(result.read_text(encoding="utf-8"))
    assert list(runs) == ["this checkout", str(ROOT)]
    for (measure,) in runs.values():
        assert measure["steps"] == 3 and 0 < measure["steps_s"] < measure["train_s"] < measure["job_s"]
        assert measure["loop_s"] == pytest.approx(measure["train_s"] - measure["steps_s"])
    assert "x as fast as" in run.stdout
    refused = subprocess.run([sys.executable, "bench/demo_job.py", "--against", str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "not a checkout of this project" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_the_demo_settings_benchmark_counts_the_answers_learned(tmp_path):
    work = tmp_path / "work"
    run = subprocess.run(
        [sys.executable, "bench/demo_settings.py", "--seeds", "5", "--set", "max_steps=2", "--rows", "4",
         "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert re.search(r"seed 5: 2 steps in [\d.]+ s, final loss [\d.]+, adapter 0 of 4 answers", run.stdout)
    (result,) = work.glob("demo-settings-*.json")
    report = json.loads(result.read_text(encoding="utf-8"))
    assert report["overrides"] == {"max_steps": 2}
    (measure,) = report["runs"]
    assert measure["seed"] == 5 and measure["steps"] == 2 and measure["rows"] == 4
    assert measure["base_right"] == measure["adapter_right"] == 0  # two steps teach it nothing yet
    refused = subprocess.run([sys.executable, "bench/demo_settings.py", "--set", "epochs"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "KEY=VALUE" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_the_attention_paths_benchmark_compares_three_ways_with_the_same_gradients():
    run = subprocess.run(
        [sys.executable, "bench/attention_paths.py", "--layers", "1", "--repeats", "1", "--length", "24"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "ms (median)" not in line]
    ways = ["transformers' own", "grouped key/value heads", "grouped heads and the rotary embedding in one step"]
    assert [row.split(" | ")[0] for row in rows] == ["| " + way for way in ways]
    gap = float(re.search(r"input gradients between the ways: (\S+)", run.stdout).group(1))
    assert gap < 1e-5
    refused = subprocess.run([sys.executable, "bench/attention_paths.py", "--layers", "0"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "at least 1" in refused.stderr and "Traceback" not in refused.stderr


def test_the_cpu_by_process_groups_a_process_by_its_program_not_its_arguments():
    """An app, a training or a benchmark that a test starts names pytest's temporary folders in its arguments: it
    is counted as what it runs, not as a test process (until 2026-12-02 it was counted as one)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from cpu_by_process import group
    finally:
        sys.path.remove(str(ROOT / "bench"))
    tmp = "/tmp/pytest-of-root/pytest-7/popen-gw1/test_x0"
    py = "/work/.venv/bin/python"
    cases = {
        (py, "-m", "pytest", "-p", "timeline"): "test processes",
        ("/work/.venv/bin/pytest", "-q"): "test processes",
        (py, "-u", "-c", "import sys;exec(eval(sys.stdin.readline()))"): "test processes",
        (py, "app.py", "--port", "4000", "--auth-file", f"{tmp}/users"): "apps (python app.py)",
        (py, "-X", "importtime", "app.py"): "apps (python app.py)",
        (py, "-u", "-m", "lora_core", "train", "--base", f"{tmp}/Models/LLM/demo"): "other Python processes",
        (py, f"{py[:-6]}torchrun", "--nproc-per-node", "2", "-m", "lora_core"): "other Python processes",
        (py, "bench/train_gpu.py", "--work", tmp): "other Python processes",
        (py, "-c", f"print('app.py', {tmp!r})"): "other Python processes",
        ("/usr/lib/chromium/chromium", "--type=renderer"): "Chromium",
        ("/proc/self/exe", "--type=utility"): "Chromium",
        ("/bin/bash", "-c", f"pytest {tmp}"): "other",
    }
    for argv, expected in cases.items():
        assert group(list(argv)).startswith(expected), argv
    assert group([]) == "other"  # a process being reaped has no arguments left


@pytest.mark.slow
def test_the_cpu_by_process_counts_a_child_process_and_keeps_the_exit_status():
    busy = "import time\nend = time.process_time() + 1.6\nwhile time.process_time() < end: pass"
    parent = (
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {busy!r}, '/tmp/pytest-of-x'])\nsys.exit(3)"
    )
    run = subprocess.run([sys.executable, "bench/cpu_by_process.py", "--", sys.executable, "-c", parent], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 3, run.stderr[-2000:]
    assert re.search(r"wall [\d.]+ s, exit status 3", run.stdout), run.stdout
    # the command's own processes only: the command and its child, not the test process running this test
    found = re.search(r"([\d.]+) s +(\d+) processes +other Python processes", run.stdout)
    assert found and 1.0 <= float(found.group(1)) <= 3.0 and int(found.group(2)) == 2, run.stdout
    assert "test processes" not in run.stdout, run.stdout
    machine = re.search(r"the machine, everything on it: ([\d.]+) of its \d+ cores busy", run.stdout)
    assert machine and float(machine.group(1)) > 0.3, run.stdout
