"""Tensor files: every safetensors read/write (tensorfile.py). Atomic writes of any file are lorastudio.fileio."""
