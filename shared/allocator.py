"""The C allocator's settings for this process: at most two malloc arenas.

glibc gives each thread that allocates at the same time as another an arena of its own, up
to eight per core, and memory freed in one arena serves only that arena. An export runs a
dozen threads that allocate large buffers (downloads, Arrow blocks, the hashing engine,
spills, request bodies), so freed memory piles up in many arenas: measured on a 5M-profile
export, 462 MB peak with the default and 422 MB with two arenas, at the same speed
(docs/performance.md). Setting ``MALLOC_ARENA_MAX`` in the environment before the process
starts does the same and takes precedence: this leaves it alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
ARENAS = 2


def limit_arenas() -> bool:
    """Cap glibc's arenas for the threads created from now on; False where not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_ARENA_MAX, ARENAS))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return False
