"""python -m extractor and its check command on MPEG-TS files."""

import subprocess
import sys

import tsmedia
from helpers import ROOT, assert_same_audio

CLI = [sys.executable, "-m", "extractor"]


def test_ts_file_to_file(tmp_path):
    src, out = tsmedia.make("hevc_ac3.ts"), tmp_path / "a.ts"
    r = subprocess.run(CLI + [str(src), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert_same_audio(src, out)


def test_m2ts_pipe_to_pipe_equals_file_to_pipe():
    src = tsmedia.make("m2ts.m2ts")
    by_pipe = subprocess.run(CLI + ["-", "-"], cwd=ROOT, input=src.read_bytes(), capture_output=True)
    by_file = subprocess.run(CLI + [str(src), "-"], cwd=ROOT, capture_output=True)
    assert by_pipe.returncode == 0 and by_pipe.stdout == by_file.stdout
    assert len(by_pipe.stdout) % 192 == 0 and by_pipe.stdout[4] == 0x47


def test_video_only_ts_exits_1_and_leaves_no_file(tmp_path):
    out = tmp_path / "a.ts"
    r = subprocess.run(CLI + [str(tsmedia.make("video_only.ts")), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 1 and b"no audio packets" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_check_describes_programs_pids_types_pcr_and_duration():
    r = subprocess.run(CLI + ["check", str(tsmedia.make("pcr_on_audio.ts"))], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1  # the CDN extracts no TS
    lines = r.stdout.splitlines()
    assert lines[0].endswith(f"MPEG-TS, {tsmedia.make('pcr_on_audio.ts').stat().st_size} bytes")
    assert "video h.264 (PID 256, type 0x1b)" in lines[1] and "audio aac (adts) (PID 257, type 0x0f) 2.7" in lines[1]
    assert "  program 1: PMT PID 4096 (version 0), PCR PID 256 (video: kept as PCR-only packets)" in lines
    assert "  program 2: PMT PID 4097 (version 0), PCR PID 257 (audio: kept)" in lines
    assert "  CDN audio extraction: no: the CDN extracts audio from MP4 and FLV only" in lines
    assert lines[-1].startswith("  this product: yes, ")


def test_check_m2ts_and_a_file_without_audio():
    r = subprocess.run(CLI + ["check", str(tsmedia.make("m2ts.m2ts")), str(tsmedia.make("video_only.ts"))],
                       cwd=ROOT, capture_output=True, text=True)
    assert "M2TS (192-byte packets)" in r.stdout
    assert "this product: no: the MPEG-TS has no audio packets" in r.stdout
