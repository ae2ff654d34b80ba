"""The built-in demo: an origin on 127.0.0.1 serving the sample media, and the proxy in front of it.

    scripts/serve                 (or: .venv/bin/python scripts/demo.py [--port 8080])

Prints the demo page's URL (every sample beside its audio-only self, see demo_page.py) and URLs to
try with curl, then runs until Ctrl-C.
"""

import argparse
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import demo_page
from origin import Origin

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "media"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(wanted: int) -> int:
    if port_free(wanted):
        return wanted
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="proxy port (another is picked if busy)")
    args = parser.parse_args()

    origin = Origin(MEDIA).start()
    demo_page.mount(origin, MEDIA)
    port = pick_port(args.port)
    mitmdump = Path(sys.executable).parent / "mitmdump"
    proxy = subprocess.Popen([
        str(mitmdump), "-s", str(ROOT / "addon" / "audio_only.py"), "--mode", f"reverse:{origin.url}",
        "--listen-host", "127.0.0.1", "-p", str(port), "--set", "flow_detail=0",
    ], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        if proxy.poll() is not None:
            print("demo: mitmdump exited before it was ready", file=sys.stderr)
            return 1
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proxy.terminate()
                print("demo: mitmdump did not start listening within 30 s", file=sys.stderr)
                return 1
            time.sleep(0.1)

    edge = f"http://127.0.0.1:{port}"
    names = sorted(p.name for p in MEDIA.iterdir() if p.suffix in (".flv", ".mp4", ".m4a", ".mov"))
    print(f"\nAudio-only edge on {edge}, in front of the origin {origin.url} ({MEDIA.relative_to(ROOT)}/).")
    print(f"\n  Open {edge}/ in a browser: every sample beside its audio-only self, to play and compare.\n")
    print("Sample files:", ", ".join(names))
    print("Or try:")
    print(f"  curl -o audio.flv '{edge}/h264_aac.flv?ali_audio_only=1'   # only metadata and audio, chunked")
    print(f"  curl -o video.flv '{edge}/h264_aac.flv'                    # the origin's file, untouched")
    print(f"  curl -o live.flv  '{edge}/h264_aac.flv?ali_audio_only=1&live=1'  # paced like a live stream")
    print(f"  curl -o audio.mp4 '{edge}/h264_aac.mp4?ali_audio_only=1'   # MP4: audio/mp4, a file with a length and ranges")
    print(f"  curl -o late.m4a  '{edge}/moov_end.mp4?ali_audio_only=1'   # MP4 with the moov at the end")
    print(f"  curl -o frag.mp4  '{edge}/frag_moof_base.mp4?ali_audio_only=1'  # fragmented MP4, a file too")
    print(f"  ffprobe '{edge}/streaming/hls-ts/master.m3u8?ali_audio_only=1'   # HLS: the playlists rewritten, audio only")
    print(f"  ffprobe '{edge}/streaming/dash/manifest.mpd?ali_audio_only=1'     # DASH: only the audio set")
    print("  ffprobe audio.flv; ffprobe audio.mp4; ls -l audio.flv video.flv")
    print("Ctrl-C stops.\n", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        proxy.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
        origin.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
