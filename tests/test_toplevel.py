"""The MP4 top level read from a file the reader does not hold (extractor/mp4/toplevel.py): it says
which bytes it needs, and what it reads agrees with the tests' own box walker (mp4tools.boxes)."""

import struct

import pytest

from extractor.errors import LimitExceeded, MalformedInput, UnsupportedInput
from extractor.mp4.toplevel import HEADER_READ, MAX_HOPS, TopLevelReader
from helpers import MEDIA
from mp4tools import boxes

LIMIT = 64 << 20


def read(data: bytes, length: int | None = -1, limit: int = LIMIT, head: bytes = b"", until_moov: bool = False):
    """The reader driven over `data` as a Range-reading client would: (result, the reads it asked for)."""
    reader = TopLevelReader(len(data) if length == -1 else length, limit, head, until_moov)
    asked = []
    while reader.need is not None:
        offset, size = reader.need
        asked.append((offset, size))
        reader.feed(data[offset : offset + size])
    return reader.result, asked


@pytest.mark.parametrize("name", ["h264_aac.mp4", "moov_end.mp4", "two_audio.mp4", "quicktime.mov", "audio_only.m4a",
                                  "frag_moof_base.mp4", "frag_sidx.mp4", "cmaf.mp4", "frag_two_audio.mp4"])
def test_the_top_level_agrees_with_the_tests_walker(name):
    data = (MEDIA / name).read_bytes()
    top = [(kind, pos, header, size) for kind, pos, header, size in boxes(data)]
    result, asked = read(data)
    found = {kind: (pos, size) for kind, pos, header, size in top if kind in (b"ftyp", b"moov")}
    assert result.ftyp == data[found[b"ftyp"][0] : sum(found[b"ftyp"])]
    assert result.moov == data[found[b"moov"][0] : sum(found[b"moov"])] and result.moov_at == found[b"moov"][0]
    assert result.mdats == [(pos + header, pos + size) for kind, pos, header, size in top if kind == b"mdat"]
    moov_at = found[b"moov"][0]
    kept = [(kind, pos, data[pos : pos + size]) for kind, pos, header, size in top
            if pos > moov_at and kind in (b"moof", b"styp", b"emsg", b"prft")]
    assert result.after == kept
    # Never an mdat's payload read for itself: each read is a header (16 bytes, or 4 KiB once fragments
    # began) or a box it keeps, with the next box's header.
    wanted = {(pos, size) for kind, pos, header, size in top if kind in (b"ftyp", b"moov", b"moof", b"styp", b"emsg", b"prft")}
    for offset, size in asked:
        whole_box = any(offset == pos and size - box <= 16 for pos, box in wanted)
        assert size in (16, HEADER_READ) or whole_box or offset + size == len(data), (offset, size)


def test_the_first_bytes_given_spare_a_read_and_until_moov_stops_there():
    data = (MEDIA / "moov_end.mp4").read_bytes()
    _, asked = read(data)
    _, with_head = read(data, head=data[:16])
    assert with_head == asked[1:]  # the first header came with the head
    result, asked = read((MEDIA / "h264_aac.mp4").read_bytes(), until_moov=True)
    assert result.moov and result.mdats == []  # the moov comes first: nothing after it is read


def test_a_file_of_unknown_length_stops_at_a_box_to_the_end():
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    top = list(boxes(data))
    last = top[-1]
    to_the_end = bytearray(data)
    struct.pack_into(">I", to_the_end, last[1], 0)  # the last box (an mdat) runs to the end
    result, _ = read(bytes(to_the_end), length=None)
    assert result.moov and result.mdats == []


def test_errors_name_the_box():
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    with pytest.raises(LimitExceeded, match="moov is .* above audio_only_max_header"):
        read(data, limit=1000)
    no_moov = data.replace(b"moov", b"free", 1)
    with pytest.raises(MalformedInput, match="no moov box"):
        read(no_moov)
    many = b"".join(struct.pack(">I4s", 8, b"free") for _ in range(MAX_HOPS + 1))
    with pytest.raises(UnsupportedInput, match=f"more than {MAX_HOPS} top-level boxes"):
        read(many)
    with pytest.raises(RuntimeError):
        reader = TopLevelReader(len(data), LIMIT)
        while reader.need is not None:
            offset, size = reader.need
            reader.feed(data[offset : offset + size])
        reader.feed(b"")
