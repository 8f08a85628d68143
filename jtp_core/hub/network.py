"""Deciding quickly that the hub cannot be reached, and tidying up after a download that failed.

huggingface_hub retries a refused or timed-out connection with back-off (about 25 s before it gives up), and
with ``HF_HUB_OFFLINE=1`` it answers with its own generic text. Both cases mean the same to a user: the files
must be put in place by hand. So: ``HF_HUB_OFFLINE`` is honoured before the hub library is called, and one
TCP connection to the endpoint (or the proxy that would carry the request) is tried with a short timeout first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT_S = 5.0
_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network (huggingface_hub's own spellings of "true")."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def unreachable_reason(endpoint: str | None = None, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the hub (or its proxy) opens within ``timeout``; else why it did not."""
    url = urlsplit(hub_endpoint(endpoint))
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        target, what = urlsplit(proxy if "://" in proxy else f"http://{proxy}"), "the proxy"
    else:
        target, what = url, "the hub"
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:  # refused, no route, DNS failure, timeout
        reason = error.strerror or str(error) or type(error).__name__
        return f"cannot reach {what} at {host}:{port} ({reason})"


def clean_failed_download(folder: Path) -> None:
    """Remove what a failed download left in ``folder`` that is of no use: lock files nobody holds, and the
    hub's ``.cache`` when it holds no partial data to resume from; the folder itself when that leaves it empty.

    A lock another process holds (a download going on in parallel) is left alone.
    """
    cache = folder / ".cache"
    if cache.is_dir():
        for lock in cache.rglob("*.lock"):
            _remove_free_lock(lock)
        if not any(cache.rglob("*.incomplete")):  # nothing to resume: the cache is only bookkeeping
            shutil.rmtree(cache, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if empty


def _remove_free_lock(lock: Path) -> None:
    from filelock import FileLock, Timeout  # huggingface_hub's own lock library

    try:
        with FileLock(lock, timeout=0):
            pass
    except Timeout:
        return  # held: someone is downloading
    with contextlib.suppress(OSError):
        lock.unlink()
