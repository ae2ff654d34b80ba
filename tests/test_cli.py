"""python -m extractor on files and pipes."""

import os
import stat
import subprocess
import sys
import threading

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


def test_a_progress_bar_on_a_terminal_after_a_second_and_none_in_a_pipe(tmp_path):
    """Fed 16 MiB at about 10 MiB/s, stderr a terminal (a pty of 100 columns): the bar shows bytes and
    rate once a second has passed, and is cleared at the end; with stderr a pipe, nothing."""
    import fcntl
    import pty
    import struct
    import termios
    import time

    data = (MEDIA / "h264_aac.flv").read_bytes()
    header_end = struct.unpack_from(">I", data, 5)[0] + 4
    big = data + data[header_end:] * 55  # tags repeated: the FLV filter takes them as they come

    def feed(stdin):
        for i in range(0, len(big), 1 << 20):
            stdin.write(big[i : i + (1 << 20)])
            stdin.flush()
            time.sleep(0.1)
        stdin.close()

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen(CLI + ["-", str(tmp_path / "a.flv")], cwd=ROOT, stdin=subprocess.PIPE, stderr=slave)
    os.close(slave)
    threading.Thread(target=feed, args=(p.stdin,), daemon=True).start()
    seen = b""
    while True:
        try:
            piece = os.read(master, 4096)
        except OSError:
            break
        if not piece:
            break
        seen += piece
    assert p.wait(30) == 0
    shown = seen.decode().split("\r")
    assert any("MB [00:01" in s and "MB/s]" in s for s in shown), seen
    assert shown[-1].strip() == "", seen  # cleared at the end

    p = subprocess.Popen(CLI + ["-", str(tmp_path / "b.flv")], cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    threading.Thread(target=feed, args=(p.stdin,), daemon=True).start()
    assert p.stderr.read() == b"" and p.wait(30) == 0


def one_line_failure(*args) -> str:
    r = subprocess.run(CLI + list(map(str, args)), cwd=ROOT, capture_output=True)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1, r.stderr.decode()  # one line, no traceback
    return lines[0]


def test_every_failure_is_one_line(tmp_path):
    assert one_line_failure(MEDIA / "video_only.mp4", tmp_path / "a.m4a") == (
        f"extractor: {MEDIA / 'video_only.mp4'}: the MP4 has no audio track (tracks: vide): nothing to extract")
    assert not list(tmp_path.iterdir())  # no partial output left
    assert one_line_failure(tmp_path, tmp_path / "a.m4a") == f"extractor: {tmp_path}: Is a directory"
    assert one_line_failure(tmp_path / "none.mp4", tmp_path / "a.m4a") == (
        f"extractor: {tmp_path / 'none.mp4'}: No such file or directory")
    assert one_line_failure(MEDIA / "h264_aac.mp4", tmp_path / "no" / "a.m4a") == (
        f"extractor: {tmp_path / 'no' / 'a.m4a'}: No such file or directory")


def test_a_full_device_is_written_in_place_and_never_replaced():
    assert one_line_failure(MEDIA / "h264_aac.mp4", "/dev/full") == "extractor: /dev/full: No space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_symlink_is_written_through_and_a_fifo_in_place(tmp_path):
    want = subprocess.run(CLI + [str(MEDIA / "h264_aac.mp4"), "-"], cwd=ROOT, capture_output=True).stdout
    (tmp_path / "target.m4a").write_bytes(b"old")
    (tmp_path / "link.m4a").symlink_to(tmp_path / "target.m4a")
    r = subprocess.run(CLI + [str(MEDIA / "h264_aac.mp4"), str(tmp_path / "link.m4a")], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.m4a").is_symlink() and (tmp_path / "target.m4a").read_bytes() == want

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = subprocess.run(CLI + [str(MEDIA / "h264_aac.mp4"), str(fifo)], cwd=ROOT, capture_output=True, timeout=30)
    reader.join(30)
    assert r.returncode == 0 and got == [want] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_closed_stdout_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write meets EPIPE
    try:
        r = subprocess.run(CLI + [str(MEDIA / "h264_aac.mp4"), "-"], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert r.returncode == 1 and r.stderr == b""


def test_dev_stdout_appended_to_and_permissions_kept(tmp_path):
    """OUT as /dev/stdout writes to the descriptor given (a file opened to append keeps its lines);
    a replaced regular OUT keeps its permissions."""
    log = tmp_path / "app.log"
    log.write_bytes(b"line 1\n")
    with open(log, "ab") as out:
        r = subprocess.run(CLI + [str(MEDIA / "h264_aac.flv"), "/dev/stdout"], cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    want = subprocess.run(CLI + [str(MEDIA / "h264_aac.flv"), "-"], cwd=ROOT, capture_output=True).stdout
    assert log.read_bytes() == b"line 1\n" + want
    private = tmp_path / "private.flv"
    private.write_bytes(b"old")
    private.chmod(0o600)
    assert subprocess.run(CLI + [str(MEDIA / "h264_aac.flv"), str(private)], cwd=ROOT).returncode == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_bytes() == want


def test_check_piped_into_head_ends_quietly():
    """`check *.mp4 | head -1`: the reader leaves early; no traceback, a nonzero status."""
    files = sorted(str(p) for p in MEDIA.glob("*.mp4")) * 20  # more lines than a pipe buffer holds
    p = subprocess.Popen(CLI + ["check", *files], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    stderr = p.stderr.read()
    p.wait(60)
    assert first.endswith(b"bytes\n")
    assert b"Traceback" not in stderr, stderr.decode()


def test_a_run_imports_only_what_it_needs(tmp_path):
    """An FLV extracted in a pipe imports neither tqdm (no bar is shown) nor the MP4 and TS readers: a
    short run's time is mostly imports."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "extractor", str(MEDIA / "h264_aac.flv"),
                        str(tmp_path / "out.flv")], capture_output=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr.decode()
    imported = {line.split("|")[-1].strip() for line in r.stderr.decode().splitlines() if line.startswith("import time:")}
    assert "extractor.flv.filter" in imported  # (the listing is real)
    assert not {"tqdm", "extractor.mp4", "extractor.ts", "extractor.check"} & imported
