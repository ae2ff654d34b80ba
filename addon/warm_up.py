"""What the proxy does once, when it starts, so that the first client does not wait for it.

The first audio-only GET after mitmdump started paid for anyio importing its asyncio backend (on
httpx's first request) and for a full garbage collection of the objects mitmproxy and its addons made
when starting, both on the event loop, so every other client waited too (docs/speed.md has the
figures). Done at start instead, where no one waits: when the
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


# The hooks at which the heap was frozen (this module outlives a reload of the addon script: it is
# imported, not the script).
_frozen_at: set[str] = set()


def warm_up(hook: str) -> None:
    """Call in the running loop, at the script's `load` (before mitmproxy opens its ports) and at
    `running` (which a reload of the script calls again, as it does `load`): after the first, a call
    costs next to nothing. With no loop running (a test harness loading the addon), nothing."""
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
    # reach (after one collection, so that no garbage is kept). At the first load, and again at the
    # first running for what mitmproxy made in between (its servers, a console's screen, our server; a
    # small heap, so a short collection). Not at a reload: requests may be in flight, and what they
    # hold would be kept for good once it is garbage.
    if hook not in _frozen_at:
        gc.collect()
        gc.freeze()
        _frozen_at.add(hook)
        log.debug(f"audio-only: warmed up at {hook} ({gc.get_freeze_count()} objects frozen)")


def cool_down() -> None:
    """At `done`: what was frozen goes back to the collector. A reload of the script leaves the old
    addon (its plan cache, its pools) as garbage, which a frozen heap would keep for good."""
    gc.unfreeze()
