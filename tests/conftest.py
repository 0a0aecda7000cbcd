import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from once import WORKER, once_per_run

# No test touches the network: every model and tokenizer is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A test that names no data home of its own writes into a fresh one, never into the checkout.
os.environ.setdefault("SIMPLE_LORA_HOME", tempfile.mkdtemp(prefix="simple-lora-tests-home-"))

# The README's test command runs the suite in two processes (pytest-xdist, ``-n 2`` in pyproject.toml): each one
# computes, trains and serves its apps on one thread, so that the two share the cores instead of fighting over
# them. (Measured: 576 s for the suite so; 804 s with each training choosing its threads from the cores the other
# process leaves free, which it can only re-check between steps.)
if WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# What each process is given to run is a whole module (``--dist loadscope``), so that its module-scoped fixtures
# (a training, a served app) are made once. The modules start longest first (seconds measured in one process on
# 2 cores), so that neither process is left with a long one at the end; the rest follow in their usual order.
LONGEST_FIRST = {
    "test_browser_walkthrough": 130, "test_browser": 115, "test_reliability_processes": 95, "test_real_model": 65,
    "test_speed": 60, "test_training": 50, "test_preference_training": 30, "test_gguf": 33,
    "test_reliability": 30, "test_app_chat": 23, "test_bench": 21,
}  # fmt: skip


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """A data home (SIMPLE_LORA_HOME) shared by the tests of one module, for fixtures that train once."""
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMPLE_LORA_HOME", str(root))
        yield root


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    """The demo base model, built once per test run (it rebuilds byte for byte the same)."""
    from lora_core.demo import build_demo_model

    def build(folder: Path) -> dict:
        build_demo_model(folder / "simple-lora-demo")
        return {}

    folder, _ = once_per_run(tmp_path_factory, "demo_model", build)
    return folder / "simple-lora-demo"


@pytest.fixture(scope="session")
def install_demo(demo_model):
    """``install_demo(folder)``: a copy of the session's demo model at ``folder`` (a data home's Models/LLM/x)."""

    def install(folder: Path) -> Path:
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(demo_model, folder)
        return folder

    return install


@dataclass
class DemoTraining:
    home: Path  # its data home: the demo model at Models/LLM/demo, the adapter in Models/LoRA/
    base: Path
    adapter: Path
    snap: dict  # the job's last snapshot
    took: float  # seconds, loading to saved adapter

    def copy_to(self, home: Path, name: str) -> Path:
        """A copy of the adapter as ``home``/Models/LoRA/``name`` (for tests that change or list it)."""
        target = Path(home) / "Models" / "LoRA" / name
        shutil.copytree(self.adapter, target)
        return target


@pytest.fixture(scope="session")
def demo_training(tmp_path_factory, install_demo) -> DemoTraining:
    """The demo training itself (the demo settings on the bundled sample, about 20 s), run once per test run.
    Tests that only read its adapter share it; one that changes or lists adapters works on a copy (``copy_to``).
    Tests that are about training run their own."""
    from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET
    from lora_core.training import State, TrainConfig, TrainingJob

    def train(home: Path) -> dict:
        base = install_demo(home / "Models" / "LLM" / "demo")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SIMPLE_LORA_HOME", str(home))
            started = time.monotonic()
            config = TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task="demo", **DEMO_TRAINING)
            snap = TrainingJob(config).run()
            took = time.monotonic() - started
        assert snap["state"] == State.COMPLETED, snap["error"]
        return {"base": str(base), "snap": snap, "took": took}

    home, made = once_per_run(tmp_path_factory, "demo_training", train)
    return DemoTraining(home, Path(made["base"]), Path(made["snap"]["adapter_dir"]), made["snap"], made["took"])


def pytest_collection_modifyitems(items):
    """A test that uses a fixture its module lists in ``SLOW_FIXTURES`` (one that trains an adapter) is slow.
    The longest modules run first."""
    for item in items:
        slow_fixtures = getattr(item.module, "SLOW_FIXTURES", ())
        if set(slow_fixtures) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    longest = {name: -seconds for name, seconds in LONGEST_FIRST.items()}
    items.sort(key=lambda item: longest.get(item.module.__name__.rpartition(".")[2], 0))  # stable


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    """SmolLM2-135M-Instruct, a real instruct model, as a model folder (see tests/smollm2.py)."""
    import smollm2

    return smollm2.model_folder()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory, install_demo) -> Path:
    """A data home of the test module's own, with the demo model at ``Models/LLM/demo``."""
    root = tmp_path_factory.mktemp("home")
    install_demo(root / "Models" / "LLM" / "demo")
    return root


@pytest.fixture()
def in_demo_home(demo_home, monkeypatch) -> Path:
    """The test runs with ``demo_home`` as its data home (``pytestmark = pytest.mark.usefixtures(...)``)."""
    monkeypatch.setenv("SIMPLE_LORA_HOME", str(demo_home))
    return demo_home
