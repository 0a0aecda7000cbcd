import os
import shutil
from pathlib import Path

import pytest

# No test touches the network: every model and tokenizer is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
