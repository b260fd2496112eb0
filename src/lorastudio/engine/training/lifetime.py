"""A child process that must not outlive its parent (Linux: the kernel signals it; elsewhere: nothing)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int, parent: int) -> None:
    """Ask the kernel for `sig` when the parent process ends; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(1)
