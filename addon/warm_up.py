"""What the proxy does once, when it starts, so that the first client does not wait for it.

Measured on the first audio-only GET after mitmdump started (a 460 MB file, nginx as the origin):
about 40 ms of anyio importing its asyncio backend, on httpx's first request, and a 50 ms full
garbage collection of the 100,000 objects mitmproxy and its addons made when starting, both on the
event loop, so every other client waited too. Done at start instead, where no one waits: when the
script is loaded, before mitmproxy opens its ports (its running hooks come after that).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging

log = logging.getLogger("addon.audio_only")

# What anyio imports only when a first request is made through it (its public modules: the rest comes
# in with them, and with a first anyio.Event in the running loop).
ANYIO_MODULES = ("anyio", "anyio.abc", "anyio.lowlevel", "anyio.streams.memory", "anyio.streams.tls", "anyio.to_thread")


_froze = False  # (this module outlives a reload of the addon script: it is imported, not the script)


def warm_up() -> None:
    """Call in the running loop: at the script's `load` (before mitmproxy opens its ports) and again at
    `running` (which a reload of the script calls again); a second call costs next to nothing. With no
    loop running (a test harness loading the addon), nothing: the start has not come yet."""
    global _froze
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    try:
        for name in ANYIO_MODULES:
            importlib.import_module(name)
        import anyio
        anyio.Event()  # finds the running loop's backend: imports anyio's asyncio backend
    except Exception as e:  # an anyio that moved its modules: the first request imports them, slower
        log.debug(f"audio-only: anyio was not warmed up: {e!r}")
    # What exists at start (modules, classes, mitmproxy's and our addons' objects) lives as long as the
    # process: a full collection need not walk it each time. gc.freeze moves it out of the collector's
    # reach (after one collection, so that no garbage is kept). Once only: at a reload, requests may be
    # in flight, and what they hold would be kept for good once it is garbage.
    if not _froze:
        gc.collect()
        gc.freeze()
        _froze = True
        log.debug(f"audio-only: warmed up ({gc.get_freeze_count()} objects frozen)")


def cool_down() -> None:
    """At `done`: what was frozen goes back to the collector. A reload of the script leaves the old
    addon (its plan cache, its pools) as garbage, which a frozen heap would keep for good."""
    gc.unfreeze()
