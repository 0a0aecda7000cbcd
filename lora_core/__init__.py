"""Simple LoRA core: datasets, prompts, masking, targets, training, adapters and chat. Never imports gradio."""

import logging

__version__ = "0.1.0"

# PEFT imports bitsandbytes, whose CPU backend warns on every start that an optional hub kernel is missing.
# We never fetch kernels from a hub, so that warning is noise for our users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
