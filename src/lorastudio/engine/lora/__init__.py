"""LoRA files: what a file says (info.py), read/save/inspect (file.py), imports (convert.py), key names, fit."""
