"""The Gradio UI of Simple LoRA: one module per tab, thin wiring over ``lora_core``."""
