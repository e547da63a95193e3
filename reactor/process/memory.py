"""Keep the reactor's resident memory flat under glibc: few malloc arenas, free pages given back.

Deliveries run on short-lived threads; glibc gives threads their own malloc arenas and keeps
freed memory mapped, so a burst of prompts would leave the process 10-20 MB larger for good.
Elsewhere (musl, macOS) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


def _libc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


def limit_arenas(count: int = 2) -> None:
    """Cap glibc malloc arenas; call before threads start (MALLOC_ARENA_MAX in the environment wins)."""
    if _LIBC is not None and "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(_M_ARENA_MAX, count)


def trim() -> None:
    """Return free heap pages to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
