"""HLS (RFC 8216) playlists rewritten to audio only.

The `m3u8` package parses (the model tells master from media, variants from renditions, codecs, keys),
but the text is written by a walk over the playlist's own lines, changing only the lines that must
change: m3u8's parser skips every tag it does not know (outside strict mode) and its dumps() writes
back only what its model holds, so a round trip through it loses unknown tags (and attributes of known
tags it has no field for, and the original attribute order). What is written by hand here is the
least that cannot be avoided: an RFC 8216 §4.2 attribute list read and written back in order.

Segments are named by URIs carrying the parameters of `common` (the URL contract); see `rewrite`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

import m3u8

from ..errors import MalformedInput
from .common import InitSegment, audio_bandwidth, audio_codecs, range_param, split_codecs, track_param, with_params

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^",\s]*)')
DROPPED_FROM_VARIANTS = {"RESOLUTION", "FRAME-RATE", "VIDEO", "CLOSED-CAPTIONS", "HDCP-LEVEL", "VIDEO-RANGE",
                         "AVERAGE-BANDWIDTH", "AUDIO", "REQ-VIDEO-LAYOUT", "SUPPLEMENTAL-CODECS"}


@dataclass
class PlaylistRewrite:
    """text: the audio-only playlist, or None when the origin's must pass through unchanged (the
    reason is in warnings); kind: 'master' or 'media'."""
    text: str | None
    kind: str
    warnings: list[str] = field(default_factory=list)


InitMap = InitSegment  # an EXT-X-MAP


def attributes(text: str) -> dict[str, str]:
    """An attribute list, values as written (quoted strings keep their quotes), in order."""
    return {m.group(1): m.group(2) for m in _ATTRIBUTE.finditer(text)}


def attribute_text(attrs: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in attrs.items())


def _unquote(value: str | None) -> str | None:
    return value[1:-1] if value and value.startswith('"') else value


def _number(attrs: dict[str, str], name: str, where: str, default: int | None = 0) -> int | None:
    """A decimal-integer attribute; a clean error when it is not one."""
    value = _unquote(attrs.get(name))
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise MalformedInput(f"{where} has {name}={value!r}, not a decimal integer")
    return int(value)


def _uri(attrs: dict[str, str], tag: str) -> str:
    uri = _unquote(attrs.get("URI"))
    if not uri:
        raise MalformedInput(f"{tag} has no URI")
    return uri


def _tag(line: str) -> tuple[str, str]:
    name, _, rest = line.partition(":")
    return name, rest


def _load(text: str):
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise MalformedInput("the playlist does not begin with #EXTM3U: not an HLS playlist")
    try:
        return m3u8.loads(text)
    except Exception as error:  # m3u8 raises ValueError, ParseError, and whatever its casts raise
        raise MalformedInput(f"the HLS playlist does not parse: {error}") from error


def rewrite(text: str, playlist_url: str, name: str, param_text: str,
            tracks: dict[InitMap, tuple[int, ...]] | None = None) -> PlaylistRewrite:
    """The audio-only form of the playlist `text` fetched from `playlist_url`, for a client whose audio
    parameter is `name` and which wrote it as `param_text` (`name=value`). `tracks`: for a media
    playlist of fMP4 segments, the audio track IDs of each EXT-X-MAP (read from the init segments with
    `extractor.mp4.sidx.audio_track_ids`; see `init_maps`): each segment then names them."""
    playlist = _load(text)
    lines = text.splitlines()
    if any(k is not None and k.method == "AES-128" for k in playlist.keys + playlist.session_keys):
        return PlaylistRewrite(None, "master" if playlist.is_variant else "media", [
            "the playlist's segments are encrypted whole (EXT-X-KEY METHOD=AES-128) and we hold no key: "
            "passed through unchanged, with its video"])
    if playlist.is_variant:
        return _master(playlist, lines, name, param_text)
    return _media(lines, playlist_url, name, param_text, tracks or {})


# -- master playlists -------------------------------------------------------------------------------

def _master(playlist, lines: list[str], name: str, param_text: str) -> PlaylistRewrite:
    warnings: list[str] = []
    groups: dict[str, list[dict[str, str]]] = {}  # audio GROUP-ID -> its renditions
    for line in lines:
        tag, rest = _tag(line.strip())
        if tag == "#EXT-X-MEDIA":
            attrs = attributes(rest)
            if attrs.get("TYPE") == "AUDIO":
                groups.setdefault(_unquote(attrs.get("GROUP-ID")), []).append(attrs)
    # Each variant: its STREAM-INF attributes and URI, in order.
    variants = []
    waiting = None  # (line index, attributes) of a STREAM-INF whose URI line is still ahead
    for n, line in enumerate(lines):  # one forward pass: each STREAM-INF takes the next URI line
        stripped = line.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            if waiting is not None:
                raise MalformedInput(f"the EXT-X-STREAM-INF on line {waiting[0] + 1} has no URI line after it")
            waiting = (n, attributes(_tag(line)[1]))
        elif waiting is not None and stripped and not line.startswith("#"):
            variants.append((*waiting, stripped))
            waiting = None
    if waiting is not None:
        raise MalformedInput(f"the EXT-X-STREAM-INF on line {waiting[0] + 1} has no URI line after it")
    if len(variants) != len(playlist.playlists):  # our walk and m3u8's parse must see the same variants
        raise MalformedInput(f"the master playlist's {len(variants)} EXT-X-STREAM-INF tags do not make "
                             f"{len(playlist.playlists)} variants")
    # A variant's BANDWIDTH covers the renditions it plays with (RFC 8216 §4.3.4.2): the least of them
    # bounds what a rendition of the group can need.
    group_ceiling: dict[str, int] = {}
    for _, attrs, _ in variants:
        group, bandwidth = _unquote(attrs.get("AUDIO")), _number(attrs, "BANDWIDTH", "EXT-X-STREAM-INF")
        if group and bandwidth:
            group_ceiling[group] = min(group_ceiling.get(group, bandwidth), bandwidth)

    out_variants: dict[int, list[str]] = {}  # line index of a STREAM-INF -> the lines replacing it and its URI
    done_groups: set[str] = set()
    kept = 0
    for n, attrs, uri in variants:
        codecs = split_codecs(_unquote(attrs.get("CODECS")))
        audio = audio_codecs(_unquote(attrs.get("CODECS")))
        group = _unquote(attrs.get("AUDIO"))
        bandwidth = _number(attrs, "BANDWIDTH", "EXT-X-STREAM-INF")
        renditions = groups.get(group, [])
        separate = [r for r in renditions if "URI" in r]
        replaced: list[str] = []
        if separate and group not in done_groups:
            # Renditions with playlists of their own: each becomes a variant of its own, once, the default first.
            done_groups.add(group)
            for rendition in sorted(separate, key=lambda a: a.get("DEFAULT") != "YES"):
                new = _audio_attrs(attrs, audio, group_ceiling.get(group))
                replaced += [f"#EXT-X-STREAM-INF:{attribute_text(new)}",
                             with_params(_unquote(rendition["URI"]), [param_text])]
        # The variant's own stream carries audio: no group, or a rendition of its group without a URI
        # (RFC 8216 §4.3.4.2.1: that rendition is in the variant's own segments).
        muxed = not separate or len(separate) < len(renditions)
        if muxed and codecs and not audio:
            pass  # video only (or unknown codecs only): nothing to hear
        elif muxed:
            if not codecs:
                warnings.append(f"variant {uri} names no CODECS: kept as an audio variant, its BANDWIDTH an estimate")
            replaced += [f"#EXT-X-STREAM-INF:{attribute_text(_audio_attrs(attrs, audio, bandwidth))}",
                         with_params(uri, [param_text])]
        kept += len(replaced) // 2
        out_variants[n] = replaced
    if not kept:
        warnings.append("the master playlist has no variant with audio")

    out, skip_uri = [], False
    for n, line in enumerate(lines):
        stripped = line.strip()
        if skip_uri and stripped and not stripped.startswith("#"):
            skip_uri = False
            continue
        tag, rest = _tag(stripped)
        if n in out_variants:
            out += out_variants[n]
            skip_uri = True
        elif tag in ("#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-IMAGE-STREAM-INF"):
            continue
        elif tag == "#EXT-X-MEDIA":
            attrs = attributes(rest)
            if attrs.get("TYPE") in ("VIDEO", "CLOSED-CAPTIONS"):
                continue
            if attrs.get("TYPE") == "AUDIO":
                continue  # variants of their own now, or in the variants' own segments
            out.append(line)
        else:
            out.append(line)
    return PlaylistRewrite("\n".join(out) + "\n", "master", warnings)


def _audio_attrs(attrs: dict[str, str], audio: list[str], bandwidth: int | None) -> dict[str, str]:
    """A variant's attributes for audio only: CODECS its audio codecs, BANDWIDTH their ceiling (see
    common.AUDIO_BANDWIDTH; never above the variant's own figure), nothing about video."""
    new = {k: v for k, v in attrs.items() if k not in DROPPED_FROM_VARIANTS}
    new["BANDWIDTH"] = str(audio_bandwidth(audio, bandwidth))
    if audio:
        new["CODECS"] = '"' + ",".join(audio) + '"'
    else:
        new.pop("CODECS", None)
    return new


# -- media playlists --------------------------------------------------------------------------------

def _byterange(value: str, implied: int | None, where: str) -> tuple[int, int]:
    """(first, last) of an RFC 8216 byte range `n[@o]`; without `o`, it follows the previous range."""
    length, _, offset = value.partition("@")
    try:
        length = int(length)
        start = int(offset) if offset else implied
    except ValueError:
        raise MalformedInput(f"{where} has a bad byte range {value!r}") from None
    if start is None:
        raise MalformedInput(f"{where} has a byte range {value!r} with no offset and no range before it")
    if length <= 0 or start < 0:
        raise MalformedInput(f"{where} has a byte range {value!r} that names no bytes")
    return start, start + length - 1


def init_maps(text: str, playlist_url: str) -> list[InitMap]:
    """The EXT-X-MAP init segments of a media playlist (absolute URLs), for the addon to read their audio
    track IDs before `rewrite` (fMP4 media segments carry no moov to tell audio from video)."""
    maps: dict[InitMap, None] = {}  # (a dict: in order, each once, in linear time)
    for line in text.splitlines():
        tag, rest = _tag(line.strip())
        if tag == "#EXT-X-MAP":
            maps[_map(attributes(rest), playlist_url)] = None
    return list(maps)


def _map(attrs: dict[str, str], playlist_url: str) -> InitMap:
    url = urljoin(playlist_url, _uri(attrs, "EXT-X-MAP"))
    if "BYTERANGE" in attrs:
        first, last = _byterange(_unquote(attrs["BYTERANGE"]), 0, "EXT-X-MAP")
        return InitMap(url, first, last)
    return InitMap(url)


def _media(lines: list[str], playlist_url: str, name: str, param_text: str,
           tracks: dict[InitMap, tuple[int, ...]]) -> PlaylistRewrite:
    warnings: list[str] = []
    out: list[str] = []
    # URI -> the end (exclusive) of its last segment's (or part's) byte range: the offset a range that
    # gives none starts at (RFC 8216 §4.3.2.2; parts follow parts, draft-pantos-hls-rfc8216bis §4.4.4.9)
    segment_ends: dict[str, int] = {}
    part_ends: dict[str, int] = {}
    pending_range: str | None = None  # an EXT-X-BYTERANGE for the next segment
    segment_params: list[str] = [param_text]  # for segments and parts: the parameter, and the map's tracks

    def ranged(uri: str, value: str, where: str, ends: dict[str, int]) -> list[str]:
        first, last = _byterange(value, ends.get(uri), where)
        ends[uri] = last + 1
        return [range_param(name, first, last)]

    for line in lines:
        stripped = line.strip()
        tag, rest = _tag(stripped)
        if not stripped:
            out.append(line)
        elif not stripped.startswith("#"):
            extra = ranged(stripped, pending_range, f"segment {stripped}", segment_ends) if pending_range else []
            pending_range = None
            out.append(with_params(stripped, segment_params + extra))
        elif tag == "#EXT-X-BYTERANGE":
            pending_range = rest.strip()  # the range goes into the URI (see module doc of common)
        elif tag == "#EXT-X-MAP":
            attrs = attributes(rest)
            init = _map(attrs, playlist_url)
            uri = _uri(attrs, tag)
            extra = [range_param(name, init.first, init.last)] if init.first is not None else []
            attrs.pop("BYTERANGE", None)
            attrs["URI"] = f'"{with_params(uri, [param_text] + extra)}"'
            out.append(f"{tag}:{attribute_text(attrs)}")
            ids = tracks.get(init)
            if ids is None:
                # Its fMP4 segments carry no moov: without the init's track IDs our server cannot tell
                # their audio from their video, so no playlist naming them can be served.
                return PlaylistRewrite(None, "media", warnings + [
                    f"no audio track IDs for the init segment {init.url}: its media segments cannot be served "
                    f"audio only, so the origin's playlist passes through unchanged, with its video"])
            segment_params = [param_text, track_param(name, ids)]
        elif tag == "#EXT-X-PART":
            attrs = attributes(rest)
            uri = _uri(attrs, tag)
            extra = []
            if "BYTERANGE" in attrs:
                extra = ranged(uri, _unquote(attrs.pop("BYTERANGE")), f"EXT-X-PART {uri}", part_ends)
            attrs["URI"] = f'"{with_params(uri, segment_params + extra)}"'
            out.append(f"{tag}:{attribute_text(attrs)}")
        elif tag == "#EXT-X-PRELOAD-HINT":
            attrs = attributes(rest)
            uri = _uri(attrs, tag)
            params = segment_params if attrs.get("TYPE") == "PART" else [param_text]
            if "BYTERANGE-START" in attrs:
                first = _number(attrs, "BYTERANGE-START", "EXT-X-PRELOAD-HINT")
                length = _number(attrs, "BYTERANGE-LENGTH", "EXT-X-PRELOAD-HINT", None)
                attrs.pop("BYTERANGE-START"), attrs.pop("BYTERANGE-LENGTH", None)
                params = params + [range_param(name, first, first + length - 1 if length else None)]
            attrs["URI"] = f'"{with_params(uri, params)}"'
            out.append(f"{tag}:{attribute_text(attrs)}")
        elif tag == "#EXT-X-RENDITION-REPORT":
            attrs = attributes(rest)
            attrs["URI"] = f'"{with_params(_uri(attrs, tag), [param_text])}"'
            out.append(f"{tag}:{attribute_text(attrs)}")
        else:
            out.append(line)  # every other tag, known to m3u8 or not, as it was (keys: SAMPLE-AES stays)
    return PlaylistRewrite("\n".join(out) + "\n", "media", warnings)
