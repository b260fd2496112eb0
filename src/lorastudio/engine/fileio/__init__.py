"""Files on disk: atomic writes (atomic.py) and every safetensors read/write (tensorfile.py)."""
