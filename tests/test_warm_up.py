"""What the proxy does at start (addon/warm_up.py) spares the first client what it was measured to cost.

In a fresh interpreter, as mitmdump is when it starts: each check fails when anyio or httpx change
what they import on a first request, or when the collector is left to walk the start-up objects.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import asyncio, gc, json, ssl, sys
sys.path.insert(0, sys.argv[1])
from addon import origin_client  # as the addon loads it, with httpx
from addon.warm_up import warm_up
import httpx

async def main():
    frozen_before = gc.get_freeze_count()
    warm_up("load")
    frozen = gc.get_freeze_count()
    before = set(sys.modules)
    # A pool as origin_client makes it at the first request to an origin (the TLS context is made at start).
    async with httpx.AsyncClient(verify=ssl.create_default_context(), http2=True, limits=origin_client.LIMITS) as client:
        try:  # a port where nothing listens: the request goes as far as connecting
            await client.get("http://127.0.0.1:9/")
        except httpx.HTTPError:
            pass
    print(json.dumps({"frozen_before": frozen_before, "frozen": frozen,
                      "imported_by_first_request": sorted(set(sys.modules) - before)}))

asyncio.run(main())
"""


def run_probe() -> dict:
    import json
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_first_request_to_an_origin_imports_nothing_after_the_warm_up():
    result = run_probe()
    assert result["imported_by_first_request"] == [], (
        "httpx's first request still imports these (on the first client's time): "
        f"{result['imported_by_first_request']}; add them to warm_up.ANYIO_MODULES")


def test_the_objects_made_at_start_are_frozen_out_of_the_collectors_walks():
    result = run_probe()
    assert result["frozen_before"] == 0
    assert result["frozen"] > 10_000, result  # the interpreter, httpx, anyio: tens of thousands of objects


RELOAD = r"""
import asyncio, gc, json, sys, weakref
sys.path.insert(0, sys.argv[1])
from addon.warm_up import cool_down, warm_up

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)

async def main():
    old_addon, old_ref = cycle()  # what the first load of the script made
    warm_up("load")
    warm_up("running")
    in_flight, flight_ref = cycle()  # a request's objects when the script is reloaded
    del old_addon  # the reload: the old addon goes (its done hook), the new one starts
    cool_down()
    warm_up("load")
    warm_up("running")
    del in_flight  # the request ends
    gc.collect()
    print(json.dumps({"old addon kept": old_ref() is not None, "request kept": flight_ref() is not None}))

asyncio.run(main())
"""


def test_a_reload_of_the_script_leaves_nothing_frozen_for_good():
    """mitmproxy calls done, load and running again when the script is reloaded: the old addon, frozen with
    the start-up heap, is collected once it is garbage, and nothing in flight at the reload is frozen."""
    import json
    out = subprocess.run([sys.executable, "-c", RELOAD, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"old addon kept": False, "request kept": False}


def test_the_warm_up_is_done_before_mitmdump_opens_its_port(tmp_path):
    """mitmproxy opens its ports before it calls the running hooks: a warm-up there held a client that
    came at once (the first request of a proxy just started, a restart under load) for 64 ms."""
    from helpers import Proxy

    proxy = Proxy(tmp_path / "proxy.log", verbosity="debug")
    try:
        log = proxy.wait_for_log("listening at")
    finally:
        proxy.stop()
    lines = log.splitlines()
    warmed = [i for i, line in enumerate(lines) if "audio-only: warmed up" in line]
    listening = [i for i, line in enumerate(lines) if "listening at" in line]
    assert warmed and listening, log
    assert warmed[0] < listening[0], log
