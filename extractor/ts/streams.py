"""Which elementary streams the audio-only output keeps, from the PMT's stream_type and descriptors.

Kept: audio, timed ID3 metadata (0x15: players show it in time with the audio) and SCTE-35 splice
information (0x86: ad insertion points refer to audio time as well). Dropped: video, and everything
else (subtitles, teletext, private data): an audio-only client has nothing to show them on.
"""

from __future__ import annotations

from .psi import Pmt, Stream, descriptors

AUDIO_TYPES = {
    0x03: "mp1/mp2 audio", 0x04: "mp2 audio", 0x0F: "aac (adts)", 0x11: "aac (latm)", 0x1C: "mpeg-4 audio",
    0x2D: "mpeg-h audio", 0x2E: "mpeg-h audio", 0x81: "ac-3", 0x87: "e-ac-3",
}
DATA_TYPES = {0x15: "timed id3", 0x86: "scte-35"}
VIDEO_TYPES = {
    0x01: "mpeg-1 video", 0x02: "mpeg-2 video", 0x10: "mpeg-4 video", 0x1B: "h.264", 0x20: "h.264 (svc)",
    0x24: "hevc", 0x33: "vvc", 0x42: "avs2", 0xD1: "dirac", 0xEA: "vc-1",
}
# Blu-ray (program registration "HDMV") numbers its audio types itself.
HDMV_AUDIO = {0x80: "lpcm", 0x81: "ac-3", 0x82: "dts", 0x83: "truehd", 0x84: "e-ac-3", 0x85: "dts-hd",
              0x86: "dts-hd ma", 0xA1: "e-ac-3 (secondary)", 0xA2: "dts-hd (secondary)"}

# Private streams (0x06) are audio when a descriptor says so: DVB's AC-3, E-AC-3, DTS, DTS-HD and AAC
# descriptors, or a registration descriptor (0x05) with an audio format identifier.
AUDIO_DESCRIPTORS = {0x6A: "ac-3", 0x7A: "e-ac-3", 0x7B: "dts", 0x7C: "aac"}
EXTENSION_DESCRIPTOR, DTS_HD_EXTENSION, OPUS_EXTENSION = 0x7F, 0x0E, 0x80
REGISTRATION = 0x05
AUDIO_REGISTRATIONS = {b"AC-3": "ac-3", b"EAC3": "e-ac-3", b"AC-4": "ac-4", b"DTS1": "dts", b"DTS2": "dts",
                       b"DTS3": "dts", b"Opus": "opus", b"mlpa": "truehd", b"BSSD": "smpte 302m"}
PRIVATE = 0x06
# Descriptors that say nothing of what a private stream carries (ISO 639 language, stream identifier).
NEUTRAL_DESCRIPTORS = {0x0A, 0x52}


def private_audio(stream: Stream) -> str | None:
    for tag, body in descriptors(stream.descriptors):
        if tag in AUDIO_DESCRIPTORS:
            return AUDIO_DESCRIPTORS[tag]
        if tag == REGISTRATION and body[:4] in AUDIO_REGISTRATIONS:
            return AUDIO_REGISTRATIONS[body[:4]]
        if tag == EXTENSION_DESCRIPTOR and body[:1] in (bytes([DTS_HD_EXTENSION]), bytes([OPUS_EXTENSION])):
            return "dts-hd" if body[0] == DTS_HD_EXTENSION else "opus"
    return None


def is_hdmv(pmt: Pmt) -> bool:
    return any(tag == REGISTRATION and body[:4] == b"HDMV" for tag, body in descriptors(pmt.program_info))


def kind(stream: Stream, hdmv: bool = False) -> str:
    """'audio', 'data' (kept), 'private' (kept when its PES are audio) or 'video', 'other' (dropped).

    A private stream described by nothing but a language is what ffmpeg writes for AAC in M2TS (and
    what other muxers write for other things): its PES stream_id tells (0xC0-0xDF: audio)."""
    t = stream.stream_type
    if hdmv and t in HDMV_AUDIO:
        return "audio"
    if t in AUDIO_TYPES:
        return "audio"
    if t in DATA_TYPES:
        return "data"
    if t == PRIVATE and private_audio(stream):
        return "audio"
    if t == PRIVATE and all(tag in NEUTRAL_DESCRIPTORS for tag, _ in descriptors(stream.descriptors)):
        return "private"
    if t in VIDEO_TYPES:
        return "video"
    return "other"


def codec_name(stream: Stream, hdmv: bool = False) -> str:
    t = stream.stream_type
    if hdmv and t in HDMV_AUDIO:
        return HDMV_AUDIO[t]
    if t == PRIVATE:
        return private_audio(stream) or (
            "private (audio if its PES say so)" if kind(stream, hdmv) == "private" else "private data")
    return AUDIO_TYPES.get(t) or DATA_TYPES.get(t) or VIDEO_TYPES.get(t) or "unknown"


def describe(stream: Stream) -> str:
    """A stream as an error message names it."""
    return f"PID {stream.pid} type 0x{stream.stream_type:02x} ({codec_name(stream)})"
