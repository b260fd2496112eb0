"""Pure ML layer: torch, diffusers, peft, safetensors. Knows nothing of databases or the web."""
