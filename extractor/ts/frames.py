"""Audio frames that say their own length: ADTS AAC, MPEG audio (layers I-III) and AC-3.

Seeking cuts a PES between frames; for that each frame's place and duration is read from its header.
A PES is cut only when its payload is a whole chain of frames (the first starts the payload, each
header checks out, the last ends it exactly): anything else is not cut (the caller keeps or drops
the whole PES).
"""

from __future__ import annotations

ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

# MPEG audio (ISO/IEC 11172-3, 13818-3): bit rates in kbit/s by (MPEG-1?, layer), index 1-14.
_MPA_BITRATES = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPA_BITRATES[(False, 3)] = _MPA_BITRATES[(False, 2)]
_MPA_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits

# AC-3 (ATSC A/52 table 5.18): frame size in 16-bit words by frmsizecod, for 48, 44.1 and 32 kHz.
_AC3_RATES = (48000, 44100, 32000)
_AC3_48 = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1152, 1280)
_AC3_WORDS = (
    tuple(w for w in _AC3_48 for _ in (0, 1)),
    (69, 70, 87, 88, 104, 105, 121, 122, 139, 140, 174, 175, 208, 209, 243, 244, 278, 279, 348, 349, 417, 418,
     487, 488, 557, 558, 696, 697, 835, 836, 975, 976, 1114, 1115, 1253, 1254, 1393, 1394),
    tuple(w * 3 // 2 for w in _AC3_48 for _ in (0, 1)),
)


def adts(data, at: int) -> tuple[int, int, int] | None:
    """(frame size, samples, sample rate) of the ADTS frame at `at`, or None."""
    if at + 7 > len(data) or data[at] != 0xFF or data[at + 1] & 0xF6 != 0xF0:
        return None
    rate = (data[at + 2] >> 2) & 0x0F
    size = (data[at + 3] & 3) << 11 | data[at + 4] << 3 | data[at + 5] >> 5
    if rate >= len(ADTS_RATES) or size < 7:
        return None
    return size, 1024 * ((data[at + 6] & 3) + 1), ADTS_RATES[rate]


def mpeg_audio(data, at: int) -> tuple[int, int, int] | None:
    if at + 4 > len(data) or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[at + 1] >> 3) & 3, 4 - ((data[at + 1] >> 1) & 3)
    bitrate, rate, padding = data[at + 2] >> 4, (data[at + 2] >> 2) & 3, (data[at + 2] >> 1) & 1
    if version == 1 or layer == 4 or bitrate in (0, 15) or rate == 3:  # reserved, or free format
        return None
    mpeg1 = version == 3
    kbits, rate = _MPA_BITRATES[(mpeg1, layer)][bitrate - 1], _MPA_RATES[version][rate]
    if layer == 1:
        return (12000 * kbits // rate + padding) * 4, 384, rate
    if layer == 3 and not mpeg1:
        return 72000 * kbits // rate + padding, 576, rate
    return 144000 * kbits // rate + padding, 1152, rate


def ac3(data, at: int) -> tuple[int, int, int] | None:
    if at + 6 > len(data) or data[at] != 0x0B or data[at + 1] != 0x77:
        return None
    rate, code, bsid = data[at + 4] >> 6, data[at + 4] & 0x3F, data[at + 5] >> 3
    if rate == 3 or code >= 38 or bsid > 8:  # reserved, or E-AC-3 (bsid 16)
        return None
    return 2 * _AC3_WORDS[rate][code], 1536, _AC3_RATES[rate]


READERS = {"aac (adts)": adts, "mp1/mp2 audio": mpeg_audio, "mp2 audio": mpeg_audio, "ac-3": ac3}


def frame_ticks(data, read) -> list[tuple[int, int]] | None:
    """(offset, 90 kHz ticks from the first frame's start) of each frame in data, and (len(data), the
    ticks of the end) last; None unless data is exactly a chain of frames. Ticks come from the sample
    count, rounded once (no error piles up)."""
    found, at, samples = [], 0, 0
    rate = None
    while at < len(data):
        frame = read(data, at)
        if frame is None or (rate is not None and frame[2] != rate):
            return None
        size, count, rate = frame
        found.append((at, (samples * 90000 * 2 + rate) // (2 * rate)))
        at += size
        samples += count
    if at != len(data) or not found:
        return None
    found.append((at, (samples * 90000 * 2 + rate) // (2 * rate)))
    return found
