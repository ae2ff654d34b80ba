"""mitmweb showing what the edge did: an extracted MP4 flow with its mark, its MP4/FLV content view and
its comment, photographed in headless Chromium.

    .venv-py3.13/bin/python scripts/mitmweb_screenshot.py [FOLDER]    (default: docs/)

writes FOLDER/mitmweb-view.png (the response in the content view) and FOLDER/mitmweb-comment.png (the
flow's comment). On mitmproxy 12 the streamed body is kept for the view (`store_streamed_bodies`);
mitmproxy 11 cannot keep streamed bodies, so there the view has no body to show.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from browser import chromium  # noqa: E402
from origin import Origin  # noqa: E402

MEDIA = ROOT / "tests" / "media"
TOKEN = "audio-only-demo"  # mitmweb 12's password; 11 has none


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def shoot(folder: Path, log: Path) -> dict[str, str]:
    """Run origin, mitmweb and one audio-only request; photograph the flow. Returns the text of each view."""
    import mitmproxy.version

    new = int(mitmproxy.version.VERSION.split(".")[0]) >= 12
    origin = Origin(MEDIA).start()
    proxy_port, web_port = free_port(), free_port()
    extra = ["--set", f"web_password={TOKEN}", "--set", "store_streamed_bodies=true"] if new else []
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "mitmweb"), "-s", str(ROOT / "addon" / "audio_only.py"),
         "--mode", f"reverse:{origin.url}", "--listen-host", "127.0.0.1", "-p", str(proxy_port),
         "--web-host", "127.0.0.1", "--web-port", str(web_port), "--set", "web_open_browser=false", *extra],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    texts = {}
    try:
        wait_for_port(proxy_port)
        wait_for_port(web_port)
        urllib.request.urlopen(f"http://127.0.0.1:{proxy_port}/h264_aac.mp4?ali_audio_only=1", timeout=30).read()
        with chromium() as page:
            page.goto(f"http://127.0.0.1:{web_port}/" + (f"?token={TOKEN}" if new else ""))
            page.get_by_text("h264_aac.mp4").click()
            for tab, name in (("Response", "mitmweb-view.png"), ("Comment", "mitmweb-comment.png")):
                page.locator(".nav-tabs a", has_text=tab).click()
                page.wait_for_timeout(800)
                texts[tab] = page.locator("body").inner_text()
                page.screenshot(path=str(folder / name))
            texts["list"] = page.locator(".flow-table").inner_html()
    finally:
        web.terminate()
        web.wait(10)
        origin.shutdown()
    return texts


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    shoot(out, out / "mitmweb.log")
    (out / "mitmweb.log").unlink()
    print(f"wrote {out / 'mitmweb-view.png'} and {out / 'mitmweb-comment.png'}")
