import os

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
