"""python -m extractor on files and pipes."""

import subprocess
import sys

from helpers import MEDIA, ROOT, assert_same_audio

CLI = [sys.executable, "-m", "extractor"]


def test_file_to_file(tmp_path):
    out = tmp_path / "a.flv"
    r = subprocess.run(CLI + [str(MEDIA / "flv1_mp3.flv"), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert_same_audio(MEDIA / "flv1_mp3.flv", out)


def test_pipe_to_pipe():
    data = (MEDIA / "h264_aac.flv").read_bytes()
    by_pipe = subprocess.run(CLI + ["-", "-"], cwd=ROOT, input=data, capture_output=True)
    by_file = subprocess.run(CLI + [str(MEDIA / "h264_aac.flv"), "-"], cwd=ROOT, capture_output=True)
    assert by_pipe.returncode == 0 and by_pipe.stdout == by_file.stdout and by_pipe.stdout[:5] == b"FLV\x01\x04"


def test_bad_input_exits_1_with_the_reason_and_leaves_no_file(tmp_path):
    out = tmp_path / "x.flv"
    r = subprocess.run(CLI + [str(MEDIA / "video_only.flv"), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 1 and b"no audio tags" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_mp4_file_to_pipe(tmp_path):
    r = subprocess.run(CLI + [str(MEDIA / "two_audio.mp4"), "-"], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "a.mp4"
    out.write_bytes(r.stdout)
    assert_same_audio(MEDIA / "two_audio.mp4", out)
