"""LoRA Studio: train LoRA adapters from your own pictures and generate consistent action scenes."""

__version__ = "0.1.0"
