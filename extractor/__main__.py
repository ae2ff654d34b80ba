"""python -m extractor IN OUT: extract the audio of an MP4, FLV or MPEG-TS file; '-' for stdin or stdout.
python -m extractor check FILE...: describe files, and say whether the CDN and this product extract them.

Exit status: 0 done (check: every file is one the CDN extracts), 1 the input could not be extracted
(check: some file is not CDN-compatible), 2 bad usage or an unreadable file.
"""

import argparse
import mmap
import os
import stat
import sys
from contextlib import nullcontext

from . import DEFAULT_MAX_HEADER, AudioExtractor, ExtractError
from .spool import SourceFileSpool, TempFileSpool

PIECE = 1 << 20
# A file on disk is mapped and fed in large zero-copy slices: the filters step over video without
# reading it, so its pages are never touched.
MAPPED_SLICE = 64 << 20


def spool_for(src):
    """An MP4 whose moov comes last: a regular file is read again where the audio lies (no copy);
    a pipe is kept in a temporary file."""
    if os.path.isfile(f"/proc/self/fd/{src.fileno()}") or (src is not sys.stdin.buffer and src.seekable()):
        return lambda start: SourceFileSpool(src)
    return lambda start: TempFileSpool(start)


def pieces(src):
    """The input in pieces: slices of a memory map for a regular file, reads for a pipe."""
    info = os.fstat(src.fileno())
    if stat.S_ISREG(info.st_mode) and info.st_size:
        mapped = mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        try:
            for start in range(0, len(view), MAPPED_SLICE):
                yield view[start : start + MAPPED_SLICE]
        finally:
            view.release()
            try:
                mapped.close()
            except BufferError:
                pass  # slices still held (by an error's traceback): the map goes with the last of them
        return
    while piece := src.read(PIECE):
        yield piece


class Progress:
    """No bar: what run() calls of tqdm's, doing nothing."""
    n = 0

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def run(src, dst, max_header: int, total: int | None, max_spool: int) -> AudioExtractor:
    extractor = AudioExtractor(max_header=max_header, spool_factory=spool_for(src), max_spool=max_spool)
    # On a terminal, after a second of work: a bar with the rate (tqdm); nothing in pipes and scripts,
    # where tqdm is not even imported (its import is a tenth of a short run).
    progress = Progress()
    if sys.stderr.isatty():
        from tqdm import tqdm
        progress = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, delay=1, mininterval=0.2,
                        leave=False)
    try:
        for piece in pieces(src):
            out = extractor.feed(piece)
            dst.write(b"".join(out))
            # Slices of the map must all be gone before it closes.
            del out
            if isinstance(piece, memoryview):
                piece.release()
            progress.update(extractor.bytes_in - progress.n)
        dst.write(b"".join(extractor.finish()))
    finally:
        extractor.close()
        progress.close()
    return extractor


def check_files(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m extractor check",
                                     description="Describe MP4/FLV/MPEG-TS files and give two verdicts: would the CDN "
                                                 "extract their audio, and does this product (with the output size).")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    from .check import check  # (only here: it reads every format's structures)
    all_cdn = True
    for path in args.files:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                with (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else nullcontext(b"")) as data:
                    report = check(path, data, f)
        except OSError as e:
            print(f"{path}: cannot read: {e.strerror}", file=sys.stderr)
            return 2
        print("\n".join(report.lines()))
        all_cdn &= report.cdn_ok
    return 0 if all_cdn else 1


def inherited_fd(name: str) -> int | None:
    """The descriptor a /dev/stdout, /dev/stderr, /dev/fd/N or /proc/self/fd/N path names, else None."""
    aliases = {"/dev/stdout": 1, "/dev/stderr": 2}
    if name in aliases:
        return aliases[name]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None


class Output:
    """Where the audio goes: stdout; a regular file (or a path not there yet), written beside it as
    OUT.part and renamed over it only when complete; or anything else (a device, a FIFO), written in
    place, since replacing it would swap a device node for a file. A symlink is followed: what it
    points to is written or replaced, the link stays."""

    def __init__(self, name: str):
        self.name = name
        if name == "-":
            self.file, self.final, self.part = sys.stdout.buffer, None, None
            return
        if (fd := inherited_fd(name)) is not None:
            # /dev/stdout, /dev/fd/N: the descriptor we were given (a pipe, or a file opened to append),
            # written as it is: resolving the link would truncate or replace what it points to.
            self.file, self.final, self.part = os.fdopen(os.dup(fd), "wb"), None, None
            return
        target = os.path.realpath(name)
        if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
            self.file, self.final, self.part = open(target, "wb"), None, None
        else:
            self.final, self.part = target, target + ".part"
            self.file = open(self.part, "wb")
            if os.path.exists(target):  # the replacement keeps the file's permissions
                os.chmod(self.part, stat.S_IMODE(os.stat(target).st_mode))

    def write(self, data) -> None:
        self.file.write(data)

    def commit(self) -> None:
        self.file.flush()
        if self.part:
            os.fsync(self.file.fileno())  # the new content is on disk before it takes the old one's name
        if self.file is not sys.stdout.buffer:
            self.file.close()
        if self.part:
            os.replace(self.part, self.final)

    def abandon(self) -> None:
        if self.file is sys.stdout.buffer:
            return
        try:
            self.file.close()
        except OSError:
            pass
        if self.part:
            try:
                os.unlink(self.part)
            except OSError:
                pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        try:
            return check_files(argv[1:])
        except BrokenPipeError:  # `check ... | head`: as below
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    parser = argparse.ArgumentParser(prog="python -m extractor", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="MP4, FLV or MPEG-TS (M2TS) file, or - for standard input")
    parser.add_argument("output", help="where the audio goes, or - for standard output")
    parser.add_argument("--max-header", type=int, default=DEFAULT_MAX_HEADER,
                        help="most metadata bytes held in memory (default 64 MiB)")
    parser.add_argument("--max-spool", type=int, default=1 << 40,
                        help="most media bytes kept while waiting for a moov at the end of a pipe")
    args = parser.parse_args(argv)

    def fail(name: str, reason) -> int:
        print(f"extractor: {name}: {reason}", file=sys.stderr)
        return 1

    try:
        src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    except OSError as e:
        return fail(args.input, e.strerror or e)
    try:
        dst = Output(args.output)
    except OSError as e:
        return fail(args.output, e.strerror or e)
    total = None if args.input == "-" else os.fstat(src.fileno()).st_size
    try:
        extractor = run(src, dst, args.max_header, total, args.max_spool)
        dst.commit()
    except ExtractError as e:
        dst.abandon()
        return fail(args.input, e)
    except BrokenPipeError:
        # The reader of stdout left (`| head`): end quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        dst.abandon()
        return 1
    except OSError as e:
        dst.abandon()
        return fail(args.output if e.filename is None or e.filename == dst.part else e.filename, e.strerror or e)
    except BaseException:  # Ctrl-C, a signal, a bug: no OUT.part is left behind
        dst.abandon()
        raise
    for warning in extractor.warnings:
        print(f"extractor: {args.input}: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
