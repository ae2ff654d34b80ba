"""scripts/serve with no arguments, as a new user would try it: the printed URL gives audio only."""

import os
import re
import signal
import subprocess
import time

import pytest

from helpers import ROOT, streams

pytestmark = pytest.mark.e2e


def test_serve_demo_prints_a_url_that_gives_audio_only(tmp_path):
    proc = subprocess.Popen([str(ROOT / "scripts" / "serve")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, lines = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            assert line, "serve exited:\n" + "".join(lines)
            lines.append(line)
            if "Ctrl-C" in line:
                break
        else:
            pytest.fail("no URLs printed:\n" + "".join(lines))
        page = re.search(r"Open (http://\S+/) in a browser", "".join(lines))
        assert page, "".join(lines)
        r = subprocess.run(["curl", "-sS", page[1]], capture_output=True, timeout=60)
        assert b"<h1>Audio-only edge</h1>" in r.stdout and b"h264_aac.flv?ali_audio_only=1" in r.stdout
        # What the page says each sample gets is what the edge answers: a file has a length and ranges,
        # a stream is chunked.
        said = re.findall(r"<tr><td><b>([^<,]+)</b><br>[^<]*<br><i>([^<]+)</i>", r.stdout.decode())
        assert len(said) >= 10, r.stdout.decode()
        for name, answered in said:
            head = subprocess.run(["curl", "-sS", "-I", f"{page[1]}{name}?ali_audio_only=1"], capture_output=True,
                                  timeout=60).stdout.decode().lower()
            as_file = "content-length:" in head and "accept-ranges: bytes" in head
            as_stream = "transfer-encoding: chunked" in head
            if answered.startswith("rewritten"):  # a playlist: its own length, no ranges
                assert "content-length:" in head and not as_file and not as_stream, (name, head)
                continue
            assert (as_file, as_stream) == ((True, False) if answered.startswith("served as a file") else (False, True)), \
                (name, answered, head)
        urls = dict(re.findall(r"curl -o (\S+) +'([^']+ali_audio_only=1[^']*)'", "".join(lines)))
        assert {"audio.flv", "audio.mp4", "late.m4a", "frag.mp4"} <= set(urls)
        for name in ("audio.flv", "audio.mp4", "late.m4a", "frag.mp4"):
            r = subprocess.run(["curl", "-sS", "-o", name, urls[name]], cwd=tmp_path, timeout=60)
            assert r.returncode == 0
            assert [s["codec_type"] for s in streams(tmp_path / name)] == ["audio"], name
        probed = re.findall(r"ffprobe '([^']+ali_audio_only=1)'", "".join(lines))
        assert len(probed) == 2, "".join(lines)
        for url in probed:  # HLS and DASH: ffprobe reads the rewritten presentation
            assert [s["codec_type"] for s in streams(url)] == ["audio"], url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
