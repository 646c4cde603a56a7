"""Worker threads the kernel can name, so `top -H` and `ps -L` tell them apart."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from concurrent.futures import ThreadPoolExecutor

PR_SET_NAME = 15  # prctl(2): the calling thread's name, at most 15 bytes
POOL_NAME = "ivr-pool"


def name_native_thread(name: str) -> None:
    """Give the calling thread `name` in /proc/<pid>/task/<tid>/comm (Linux; elsewhere nothing)."""
    threading.current_thread().name = name
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def named_pool(name: str = POOL_NAME, max_workers: int | None = None) -> ThreadPoolExecutor:
    """A thread pool whose threads all carry `name`, for the event loop's default executor.

    Media libraries encode in the loop's executor, whose threads live on after a
    call; naming them keeps them apart from the threads a call owns."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name,
                              initializer=name_native_thread, initargs=(name,))
