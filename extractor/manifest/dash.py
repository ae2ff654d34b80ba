"""DASH MPDs (ISO/IEC 23009-1) rewritten to audio only.

In every Period only audio remains: an AdaptationSet goes when none of its Representations carries
audio (video, image/thumbnail, text, and trick-mode sets, whatever their codecs), a Representation goes
when it carries none. A muxed Representation (audio and video codecs) stays, declared audio only. Every
URL a player fetches for a kept Representation carries the parameter (see common for the contract).
The MPD is read and written by mpd_tree (safely: it is untrusted XML); the URLs are dash_urls'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MalformedInput, NoAudio
from . import dash_urls as urls
from . import mpd_tree as tree
from .common import InitSegment, audio_bandwidth, audio_codecs, split_codecs
from .dash_urls import NeedsFilePlan

TRICK_MODE = "http://dashif.org/guidelines/trickmode"
VIDEO_ATTRIBUTES = ("width", "height", "frameRate", "sar", "scanType", "maxWidth", "maxHeight", "maxFrameRate",
                    "minWidth", "minHeight", "minFrameRate", "par", "maxPlayoutRate", "codingDependency")

__all__ = ["InitSegment", "MpdRewrite", "NeedsFilePlan", "drop_representation", "init_segments", "rewrite",
           "set_index_ranges"]


@dataclass
class MpdRewrite:
    text: str | None
    kind: str = "mpd"
    warnings: list[str] = field(default_factory=list)
    needs_file_plan: list[NeedsFilePlan] = field(default_factory=list)


def _kind(period, adaptation, representation) -> str:
    """'audio', 'muxed' or 'other' for a Representation, from its codecs, else its (or its set's)
    mimeType and contentType."""
    for prop in tree.children(adaptation, "EssentialProperty") + tree.children(adaptation, "SupplementaryProperty"):
        if prop.getAttribute("schemeIdUri") == TRICK_MODE:
            return "other"
    codecs = split_codecs(tree.attr("codecs", adaptation, representation))
    mime = (tree.attr("mimeType", adaptation, representation) or "").lower()
    content = adaptation.getAttribute("contentType").lower()
    if mime.startswith(("image/", "text/", "application/ttml", "application/mp4")) or content in ("image", "text"):
        return "other"
    if codecs:
        audio = audio_codecs(",".join(codecs))
        return "other" if not audio else "audio" if len(audio) == len(codecs) else "muxed"
    return "audio" if mime.startswith("audio/") or content == "audio" else "other"


def init_segments(data: bytes | str, mpd_url: str) -> list[InitSegment]:
    """The init segments (absolute URLs) of the muxed Representations whose segments carry no moov
    (SegmentTemplate, SegmentList): the addon reads their audio track IDs before `rewrite`."""
    found = []
    doc = tree.parse(data)
    mpd = doc.documentElement
    for period, adaptation, representation in tree.representations(mpd):
        if _kind(period, adaptation, representation) != "muxed":
            continue  # an audio Representation's segments are served as they are (see urls.add_params)
        url = urls.init_url(mpd_url, mpd, period, adaptation, representation)
        if url and url not in found:
            found.append(url)
    return found


def rewrite(data: bytes | str, mpd_url: str, name: str, param_text: str,
            tracks: dict[InitSegment, tuple[int, ...]] | None = None) -> MpdRewrite:
    """The audio-only MPD of `data` fetched from `mpd_url`, for a client whose audio parameter is
    `name`, written as `param_text`. `tracks`: the audio track IDs of each init segment `init_segments`
    named, so that media segments (no moov of their own) name them."""
    doc = tree.parse(data)
    mpd = doc.documentElement
    if mpd.localName != "MPD":
        raise MalformedInput(f"the document's root is <{mpd.tagName}>, not an MPD")
    result = MpdRewrite(None)
    tracks = tracks or {}
    for period in tree.children(mpd, "Period"):
        for adaptation in tree.children(period, "AdaptationSet"):
            kept = []
            for representation in tree.children(adaptation, "Representation"):
                kind = _kind(period, adaptation, representation)
                if kind == "other":
                    tree.remove(representation)
                else:
                    kept.append((representation, kind))
            if not kept:
                tree.remove(adaptation)
                continue
            if any(kind == "muxed" for _, kind in kept):
                _declare_audio_only(period, adaptation, [r for r, _ in kept])
            for representation, kind in kept:
                # One that is audio only by its own attributes is served as the origin has it: its
                # segments, file and byte ranges are audio already (no parameter, no init to read).
                if kind == "muxed" and not urls.add_params(result, mpd_url, mpd, period, adaptation, representation,
                                                       name, param_text, tracks):
                    result.needs_file_plan = []
                    return result
        if not tree.children(period, "AdaptationSet"):
            # A Period with nothing left would be silence (or a player's error) in the middle of the
            # programme: the origin's MPD, with its video, is the better answer.
            result.warnings.append(f"Period {period.getAttribute('id') or '?'} has no audio: the origin's MPD "
                                   f"passes through unchanged, with its video")
            result.needs_file_plan = []
            return result
    result.text = tree.serialize(doc, data)
    return result


def _declare_audio_only(period, adaptation, representations) -> None:
    """A set of muxed Representations said to be audio: codecs, mimeType, contentType, no video fields,
    no video SubRepresentations, a bandwidth for the audio (as HLS BANDWIDTH: common.audio_bandwidth)."""
    for representation in representations:
        urls.fix_bandwidth_identifier(period, adaptation, representation)
        measured = 0  # what the audio SubRepresentations say they need, when they say it
        for sub in tree.children(representation, "SubRepresentation"):
            if sub.hasAttribute("codecs") and not audio_codecs(sub.getAttribute("codecs")):
                tree.remove(sub)
            elif sub.getAttribute("bandwidth").isdigit():
                measured += int(sub.getAttribute("bandwidth"))
        bandwidth = representation.getAttribute("bandwidth")
        if bandwidth.isdigit():
            audio = audio_codecs(tree.attr("codecs", adaptation, representation))
            figure = min(measured, int(bandwidth)) if measured else audio_bandwidth(audio, int(bandwidth))
            representation.setAttribute("bandwidth", str(figure))
    for node in [adaptation, *representations]:
        for attribute in VIDEO_ATTRIBUTES:
            if node.hasAttribute(attribute):
                node.removeAttribute(attribute)
        if node.hasAttribute("codecs"):
            node.setAttribute("codecs", ",".join(audio_codecs(node.getAttribute("codecs"))))
        if node.getAttribute("mimeType").startswith("video/"):
            node.setAttribute("mimeType", "audio/" + node.getAttribute("mimeType")[6:])
    if adaptation.hasAttribute("contentType"):
        adaptation.setAttribute("contentType", "audio")
    for component in tree.children(adaptation, "ContentComponent"):
        if component.getAttribute("contentType") not in ("audio", ""):
            tree.remove(component)


def set_index_ranges(data: bytes | str, period: str | None, representation: str, init_size: int,
                     index_first: int, index_last: int) -> str:
    """The MPD with one SegmentBase Representation's Initialization@range and indexRange set to those of
    our audio-only file (from its plan: the moov ends at init_size, the sidx is index_first..index_last)."""
    doc = tree.parse(data)
    mpd = doc.documentElement
    for p, adaptation, rep in tree.representations(mpd):
        if rep.getAttribute("id") != representation or (period is not None and p.getAttribute("id") != period):
            continue
        kind, info = tree.segment_info(p, adaptation, rep)
        if kind != "SegmentBase":
            raise MalformedInput(f"Representation {representation} has no SegmentBase")
        if info.parentNode is not rep:
            info = info.cloneNode(True)
            rep.insertBefore(info, rep.firstChild)
        info.setAttribute("indexRange", f"{index_first}-{index_last}")
        init = tree.first(info, "Initialization")
        if init is None:
            init = doc.createElementNS(info.namespaceURI, info.tagName.replace("SegmentBase", "Initialization"))
            info.appendChild(init)
        init.setAttribute("range", f"0-{init_size - 1}")
        return tree.serialize(doc, data)
    raise MalformedInput(f"the MPD has no Representation {representation!r}")


def drop_representation(data: bytes | str, period: str | None, representation: str) -> str:
    """The MPD without one Representation (its AdaptationSet too when it was the last): what the addon
    does to a SegmentBase Representation whose audio-only file's index ranges it cannot know. NoAudio
    (an ExtractError: the addon passes the origin's MPD through) when its Period would be left empty."""
    doc = tree.parse(data)
    for p, adaptation, rep in tree.representations(doc.documentElement):
        if rep.getAttribute("id") == representation and (period is None or p.getAttribute("id") == period):
            tree.remove(rep)
            if not tree.children(adaptation, "Representation"):
                tree.remove(adaptation)
            if not tree.children(p, "AdaptationSet"):
                raise NoAudio(f"without Representation {representation} Period {p.getAttribute('id') or '?'} has "
                              f"no audio left: the origin's MPD must pass through instead")
            return tree.serialize(doc, data)
    raise MalformedInput(f"the MPD has no Representation {representation!r}")
