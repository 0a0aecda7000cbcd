"""Simple LoRA core: datasets, prompts, masking, targets, training, adapters and chat. Never imports gradio."""

import logging
import warnings

__version__ = "0.1.0"

# PEFT imports bitsandbytes, whose CPU backend warns on every start that an optional hub kernel is missing.
# We never fetch kernels from a hub, so that warning is noise for our users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# PEFT calls a transformers method that transformers 5 has renamed; the warning is for PEFT, not for our users.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

# With a CPU-only torch build bitsandbytes can serve nothing, and PEFT's import of it costs most of a second: hidden
# (lora_core.models.hide_bitsandbytes; a CUDA build on a machine without a GPU hides it once the device is known).
from . import models as _models  # noqa: E402

if _models._cpu_only_torch():
    _models.hide_bitsandbytes()
