import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# No test touches the network: every model and tokenizer is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A test that names no data home of its own writes into a fresh one, never into the checkout.
os.environ.setdefault("SIMPLE_LORA_HOME", tempfile.mkdtemp(prefix="simple-lora-tests-home-"))


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """A data home (SIMPLE_LORA_HOME) shared by the tests of one module, for fixtures that train once."""
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMPLE_LORA_HOME", str(root))
        yield root


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    """The demo base model, built once per test session (it rebuilds byte for byte the same)."""
    from lora_core.demo import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("demo_model") / "simple-lora-demo")


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
    """The demo training itself (the demo settings on the bundled sample, about 20 s), run once per test session.
    Tests that only read its adapter share it; one that changes or lists adapters works on a copy (``copy_to``).
    Tests that are about training run their own."""
    from lora_core.demo import DEMO_TRAINING, SAMPLE_DATASET
    from lora_core.training import State, TrainConfig, TrainingJob

    home = tmp_path_factory.mktemp("demo_training")
    base = install_demo(home / "Models" / "LLM" / "demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMPLE_LORA_HOME", str(home))
        started = time.monotonic()
        snap = TrainingJob(TrainConfig(base=str(base), data=str(SAMPLE_DATASET), task="demo", **DEMO_TRAINING)).run()
        took = time.monotonic() - started
    assert snap["state"] == State.COMPLETED, snap["error"]
    return DemoTraining(home, base, Path(snap["adapter_dir"]), snap, took)


def pytest_collection_modifyitems(items):
    """A test that uses a fixture its module lists in ``SLOW_FIXTURES`` (one that trains an adapter) is slow."""
    for item in items:
        slow_fixtures = getattr(item.module, "SLOW_FIXTURES", ())
        if set(slow_fixtures) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
