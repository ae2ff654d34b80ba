"""The streaming FLV filter: header, then tag by tag, audio kept, video skipped without a copy.

States, in the order the bytes arrive:
  header    gather the 9-byte file header, emit an audio-only header
  padding   skip whatever a data offset above 9 puts between the header and the first tag
  unit      gather PreviousTagSize + tag header (15 bytes), decide what the tag is
  copy      pass an audio tag's data through as zero-copy slices of the input
  skip      step over a video (or unknown) tag's data without looking at it
  script    gather a script tag whole (bounded by max_header) and rewrite onMetaData
  peek      seeking: gather a tag's first bytes, to keep a decoder configuration (AAC
            AudioSpecificConfig, AVC/HEVC or Enhanced FLV SequenceStart) that lies before the seek
            start, and with video, to find the keyframe the output starts at

Each audio tag leaves with a PreviousTagSize we compute ourselves (inputs often carry wrong ones),
sent as soon as the tag's data is in, so a live stream gets no added delay waiting for the next tag.
"""

from ..errors import LimitExceeded, MalformedInput, NoAudio, TruncatedInput, human_size
from ..seek import SeekRange
from . import amf0, tags

AAC, EX_HEADER = 10, 9  # SoundFormat values
CONFIG_PACKETS = (0, 4)  # Enhanced FLV audio: SequenceStart, MultichannelConfig


AVC, HEVC = 7, 12  # CodecID values with a sequence header (AVCPacketType 0)
KEYFRAME = 1  # video FrameType


def is_decoder_config(tag_type: int, first: bytes) -> bool:
    """Whether a tag starting with these bytes configures a decoder rather than carrying a frame."""
    if not first:
        return False
    if tag_type == tags.VIDEO:
        if first[0] & 0x80:  # Enhanced FLV: the low bits are the packet type, 0 SequenceStart
            return first[0] & 0x0F == 0
        return first[0] & 0x0F in (AVC, HEVC) and len(first) > 1 and first[1] == 0
    sound_format = first[0] >> 4
    if sound_format == AAC:
        return len(first) > 1 and first[1] == 0  # AACPacketType 0: AudioSpecificConfig
    return sound_format == EX_HEADER and first[0] & 0x0F in CONFIG_PACKETS


def is_keyframe(first: bytes) -> bool:
    return bool(first) and (first[0] >> 4) & 0x07 == KEYFRAME


class FlvAudioFilter:
    format = "flv"

    def __init__(self, max_header: int = 64 << 20, seek: SeekRange | None = None, keep_video: bool = False):
        self.max_header = max_header
        self.seek = seek  # the part of the input wanted (see seek.py); None: all of it
        # The CDN's plain video seeking: video stays, metadata unchanged, the output starts at the
        # first video keyframe of the range.
        self.keep_video = keep_video
        self._started = seek is None
        self.bytes_in = 0
        self.bytes_out = 0
        self.audio_tags = 0
        self.dropped_tags = 0
        self.warnings: list[str] = []
        self._state = "header"
        self._need = tags.FILE_HEADER_SIZE  # bytes the gathering states wait for
        self._gathered = bytearray()
        self._remaining = 0  # bytes left to copy or skip
        self._trailer = b""  # PreviousTagSize to send after the tag being copied
        self._tag_start = 0  # input offset of the current tag, for messages
        self._script_rest = b""
        self._script_size = 0
        self._peeked_header = b""  # seeking: the header of the tag being peeked at
        self._plain = seek is None and not keep_video  # whole audio and video tags take the quick path

    # -- the sans-IO interface ------------------------------------------------------------------

    @property
    def in_metadata(self) -> bool:
        return self._state == "script"

    @property
    def metadata_start(self) -> int | None:
        """Input offset of the script tag being held (None: none is)."""
        return self._tag_start if self.in_metadata else None

    @property
    def metadata_size(self) -> int | None:
        """Size of the script tag being held (None: none is)."""
        return self._script_size if self.in_metadata else None

    def feed(self, data: bytes) -> list:
        """Take the next piece of input; return the output pieces it completes (maybe none)."""
        out: list = []
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._plain and self._state == "unit" and not self._gathered:
                pos = self._whole_tags(view, pos, end, out)
                if pos >= end:
                    break
            if self._remaining:
                n = min(self._remaining, end - pos)
                if self._state == "copy":
                    out.append(view[pos : pos + n])
                elif self._state == "script":
                    self._gathered += view[pos : pos + n]
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._tag_done(out)
                continue
            if self._gathered or end - pos < self._need:
                take = min(self._need - len(self._gathered), end - pos)
                self._gathered += view[pos : pos + take]
                pos += take
                if len(self._gathered) < self._need:
                    break
                unit, self._gathered = bytes(self._gathered), bytearray()
                self._on_fixed(unit, 0, self.bytes_in + pos, out)
            else:
                start, pos = pos, pos + self._need
                self._on_fixed(view, start, self.bytes_in + pos, out)
        self.bytes_in += end
        self._count(out)
        return out

    def finish(self) -> list:
        """The input has ended: raise if it ended inside a tag."""
        if self._state == "header":
            raise TruncatedInput(f"input ends inside the FLV header ({len(self._gathered)} of 9 bytes)")
        if self._remaining:
            what = {"copy": "an audio tag", "skip": "a video tag", "script": "a script tag",
                    "padding": "the padding after the header"}[self._state]
            raise TruncatedInput(
                f"input ends inside {what} that starts at byte {self._tag_start} "
                f"({self._remaining} bytes missing)"
            )
        # Only the last PreviousTagSize (4 bytes) or nothing may follow the last tag.
        if len(self._gathered) not in (0, tags.PREVIOUS_TAG_SIZE):
            raise TruncatedInput(
                f"input ends inside a tag header at byte {self.bytes_in - len(self._gathered)} "
                f"({len(self._gathered)} of {tags.UNIT_SIZE} bytes)"
            )
        if not self.audio_tags and self.seek is None and not self.keep_video:
            raise NoAudio(f"the FLV has no audio tags ({self.dropped_tags} other tags dropped): nothing to extract")
        return []

    # -- states ---------------------------------------------------------------------------------

    def _whole_tags(self, view: memoryview, pos: int, end: int, out: list) -> int:
        """The audio and video tags that lie whole in the piece from `pos` on, one step each: an audio
        tag as one slice and its PreviousTagSize, a video tag stepped over. The bytes out are the states'
        (unit, copy, skip), in fewer pieces; a tag cut by the piece's end, or of another type (script,
        reserved bits, an encrypted one), is left to them. Returns where it stopped.
        (The states cost about 2 µs a tag; 36,000 tags in the 10-minute file.)"""
        unpack, size_of = tags.UNIT.unpack_from, tags.previous_tag_size
        audio = dropped = 0
        last = end - tags.UNIT_SIZE
        while pos <= last:
            word = unpack(view, pos)[1]
            tag_end = pos + tags.UNIT_SIZE + (word & 0xFFFFFF)
            if tag_end > end:
                break
            kind = word >> 24
            if kind == tags.VIDEO:
                dropped += 1
            elif kind == tags.AUDIO:
                out.append(view[pos + tags.PREVIOUS_TAG_SIZE : tag_end])
                out.append(size_of(tag_end - pos - tags.UNIT_SIZE))
                audio += 1
            else:
                break
            pos = tag_end
        self.audio_tags += audio
        self.dropped_tags += dropped
        return pos

    def _on_fixed(self, buf, pos: int, input_end: int, out: list) -> None:
        """A gathering state has its bytes at buf[pos:pos+need], which end at input offset input_end."""
        if self._state == "header":
            version, flags, data_offset = tags.parse_file_header(bytes(buf[pos : pos + tags.FILE_HEADER_SIZE]))
            out.append(tags.build_file_header(version, flags if self.keep_video else tags.FLAG_AUDIO))
            self._enter_unit()
            if data_offset > tags.FILE_HEADER_SIZE:
                self._state, self._remaining = "padding", data_offset - tags.FILE_HEADER_SIZE
                self._tag_start = input_end
            return
        if self._state == "peek":
            self._after_peek(bytes(buf[pos : pos + self._need]), out)
            return
        _, word, stamp = tags.UNIT.unpack_from(buf, pos)
        type_byte, size = word >> 24, word & 0xFFFFFF
        self._tag_start = input_end - tags.TAG_HEADER_SIZE
        if type_byte & 0xC0:
            raise MalformedInput(
                f"tag header with reserved bits set (type byte 0x{type_byte:02x}): not an FLV tag, "
                f"or the stream lost its place"
            )
        tag_type = type_byte & 0x1F
        media = tag_type == tags.AUDIO or (tag_type == tags.VIDEO and self.keep_video)
        if media and self.seek is not None:
            where = (stamp >> 8 | (stamp & 0xFF) << 24) if self.seek.by_time else self._tag_start
            if self.seek.end is not None and (where > self.seek.end if self.seek.by_time else where >= self.seek.end):
                self._state, self._remaining = "skip", size  # past the end of the range
                return self._tag_done(out) if not size else None
            if where < self.seek.start or not self._started:
                # Not in the output yet: its first bytes tell whether it configures a decoder (kept)
                # or, with video, is the keyframe the output starts at.
                self._peeked_header = bytes(buf[pos + tags.PREVIOUS_TAG_SIZE : pos + tags.UNIT_SIZE])
                self._peek_type, self._peek_in_range = tag_type, where >= self.seek.start
                self._state, self._need, self._remaining = "peek", min(2, size), 0
                self._trailer = tags.previous_tag_size(size)
                self._peek_size = size
                return self._after_peek(b"", out) if not size else None
        if media:
            out.append(buf[pos + tags.PREVIOUS_TAG_SIZE : pos + tags.UNIT_SIZE])
            self._trailer = tags.previous_tag_size(size)
            self._state, self._remaining = "copy", size
            self.audio_tags += tag_type == tags.AUDIO
        elif tag_type == tags.SCRIPT:
            if size > self.max_header:
                raise LimitExceeded(
                    f"script tag is {human_size(size)}, above the {human_size(self.max_header)} limit "
                    f"(audio_only_max_header)"
                )
            self._script_rest = bytes(buf[pos + 8 : pos + tags.UNIT_SIZE])  # timestamp, stream id
            self._state, self._remaining, self._script_size = "script", size, size
        else:
            self._state, self._remaining = "skip", size
            self.dropped_tags += 1
        if not size:
            self._tag_done(out)

    def _after_peek(self, first: bytes, out: list) -> None:
        """A tag before the output starts: kept whole if it configures a decoder, or if it is where
        the output starts (audio in the range; with video, the first keyframe in the range)."""
        rest = self._peek_size - len(first)
        if self._peek_in_range and (not self.keep_video or (self._peek_type == tags.VIDEO and is_keyframe(first))):
            self._started = True
        if self._started or is_decoder_config(self._peek_type, first):
            out += (self._peeked_header, first)
            self._state, self._remaining = "copy", rest
            self.audio_tags += self._peek_type == tags.AUDIO
        else:
            self._state, self._remaining = "skip", rest
            self.dropped_tags += 1
        if not rest:
            self._tag_done(out)

    def _tag_done(self, out: list) -> None:
        if self._state == "copy":
            out.append(self._trailer)
        elif self._state == "script":
            self._emit_script(bytes(self._gathered), out)
            self._gathered = bytearray()
        self._enter_unit()

    def _enter_unit(self) -> None:
        self._state, self._need = "unit", tags.UNIT_SIZE

    def _emit_script(self, data: bytes, out: list) -> None:
        try:
            rewritten, duration = amf0.rewrite_metadata(data)
        except MalformedInput as e:
            if not self.keep_video:
                # Metadata is optional for playback: an unreadable script tag is dropped, not fatal.
                self.warnings.append(f"script tag at byte {self._tag_start} dropped: {e}")
                self.dropped_tags += 1
                return
            rewritten, duration = data, None
        if not self.keep_video:  # plain video seeking sends the metadata as it came
            data = rewritten
        if self.seek and self.seek.by_time and duration is not None and self.seek.start > duration * 1000:
            self.warnings.append(f"seek start {self.seek.start / 1000:g} s is past the duration {duration:g} s: "
                                 f"the whole file is sent (the CDN's rule for FLV)")
            self.seek, self._started = None, True
        out.append(tags.tag_header(tags.SCRIPT, len(data), self._script_rest))
        out.append(data)
        out.append(tags.previous_tag_size(len(data)))

    def _count(self, out: list) -> None:
        for piece in out:
            self.bytes_out += len(piece)
