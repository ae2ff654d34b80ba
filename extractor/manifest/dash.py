"""DASH MPDs (ISO/IEC 23009-1) rewritten to audio only.

The MPD is untrusted XML: it is parsed by defusedxml, which refuses entity declarations (the billion
laughs, external entities) instead of expanding them. The DOM is minidom's: it keeps every element's
and attribute's qualified name as written, so namespaces and their prefixes, comments and the text
between elements come out as they came in; only what is rewritten changes.

In every Period only audio remains: an AdaptationSet goes when none of its Representations carries
audio (video, image/thumbnail, text, and trick-mode sets, whatever their codecs), a Representation goes
when it carries none. A muxed Representation (audio and video codecs) stays, declared audio only. Every
URL a player fetches for a kept Representation carries the parameter (see common for the contract).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from xml.dom import minidom
from xml.parsers.expat import ExpatError

import defusedxml
import defusedxml.minidom

from ..errors import MalformedInput, NoAudio
from .common import InitSegment, audio_bandwidth, audio_codecs, range_param, split_codecs, track_param, with_params

TRICK_MODE = "http://dashif.org/guidelines/trickmode"
VIDEO_ATTRIBUTES = ("width", "height", "frameRate", "sar", "scanType", "maxWidth", "maxHeight", "maxFrameRate",
                    "minWidth", "minHeight", "minFrameRate", "par", "maxPlayoutRate", "codingDependency")
_XML_DECLARATION = re.compile(r"<\?xml[^>]*\?>")
_BANDWIDTH_IDENTIFIER = re.compile(r"\$Bandwidth(?:%0(\d+)d)?\$")  # ISO/IEC 23009-1 §5.3.9.4.4, with its width
MAX_DEPTH = 100  # elements within elements (see _check_depth)
TEMPLATE_URL_ATTRIBUTES = ("media", "index", "initialization", "bitstreamSwitching")


@dataclass
class NeedsFilePlan:
    """A kept muxed Representation served as one file (SegmentBase) whose byte ranges (Initialization@range,
    indexRange) name the origin's file: they hold for our audio-only file only once its plan says where
    its moov and sidx end (`set_index_ranges`). An audio-only one is never named here: its BaseURL
    stays without the parameter, its file and ranges are the origin's as they are."""
    period: str | None
    representation: str | None
    url: str  # the file, absolute, with the parameter


@dataclass
class MpdRewrite:
    text: str | None
    kind: str = "mpd"
    warnings: list[str] = field(default_factory=list)
    needs_file_plan: list[NeedsFilePlan] = field(default_factory=list)


def _parse(data: bytes | str) -> minidom.Document:
    try:
        doc = defusedxml.minidom.parseString(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as error:
        raise MalformedInput(f"the MPD declares XML entities or external references ({error}): refused, an "
                             f"MPD is untrusted input and never needs them") from None
    except ExpatError as error:
        raise MalformedInput(f"the MPD is not well-formed XML: {error}") from None
    except RecursionError:
        raise MalformedInput("the MPD's elements are nested too deeply to parse") from None
    _check_depth(doc)
    return doc


def _check_depth(doc: minidom.Document) -> None:
    """minidom writes and clones an element by recursion, a level a frame: an MPD nested deeper than
    any real one (MPD, Period, AdaptationSet, Representation, SegmentTemplate, SegmentTimeline, S is
    seven) is refused here, walked without recursion, before it can raise RecursionError there."""
    stack = [(doc.documentElement, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedInput(f"the MPD's elements are nested more than {MAX_DEPTH} deep (<{node.tagName}> is "
                                 f"at depth {depth}): refused, no MPD needs that")
        stack.extend((child, depth + 1) for child in node.childNodes if child.nodeType == child.ELEMENT_NODE)


def _children(node, name: str) -> list:
    return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.localName == name]


def _first(node, name: str):
    found = _children(node, name)
    return found[0] if found else None


def _remove(node) -> None:
    """An element out of its parent, with the indentation before it (the layout stays tidy)."""
    parent, before = node.parentNode, node.previousSibling
    if before is not None and before.nodeType == before.TEXT_NODE and not before.data.strip():
        parent.removeChild(before)
    parent.removeChild(node)


def _text(node) -> str:
    return "".join(c.data for c in node.childNodes if c.nodeType in (c.TEXT_NODE, c.CDATA_SECTION_NODE)).strip()


def _set_text(node, text: str) -> None:
    for child in list(node.childNodes):
        node.removeChild(child)
    node.appendChild(node.ownerDocument.createTextNode(text))


def _base(url: str, *nodes) -> str:
    """The BaseURL in effect below `nodes` (outermost first), absolute."""
    for node in nodes:
        base = _first(node, "BaseURL")
        if base is not None:
            url = urljoin(url, _text(base))
    return url


def _attr(name: str, *nodes) -> str | None:
    """The attribute from the innermost node that has it (a Representation inherits its set's)."""
    for node in reversed(nodes):
        if node.hasAttribute(name):
            return node.getAttribute(name)
    return None


def _segment_info(*nodes):
    """(kind, element) of the innermost SegmentTemplate/SegmentList/SegmentBase, or (None, None)."""
    for node in reversed(nodes):
        for kind in ("SegmentTemplate", "SegmentList", "SegmentBase"):
            found = _first(node, kind)
            if found is not None:
                return kind, found
    return None, None


def _substitute(template: str, representation) -> str:
    """A template with the identifiers fixed for a Representation ($Number$ and $Time$ stay)."""
    out = template.replace("$RepresentationID$", representation.getAttribute("id"))
    return out.replace("$Bandwidth$", representation.getAttribute("bandwidth"))


def _kind(period, adaptation, representation) -> str:
    """'audio', 'muxed' or 'other' for a Representation, from its codecs, else its (or its set's)
    mimeType and contentType."""
    for prop in _children(adaptation, "EssentialProperty") + _children(adaptation, "SupplementaryProperty"):
        if prop.getAttribute("schemeIdUri") == TRICK_MODE:
            return "other"
    codecs = split_codecs(_attr("codecs", adaptation, representation))
    mime = (_attr("mimeType", adaptation, representation) or "").lower()
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
    doc = _parse(data)
    mpd = doc.documentElement
    for period, adaptation, representation in _representations(mpd):
        if _kind(period, adaptation, representation) != "muxed":
            continue  # an audio Representation's segments are served as they are (see _add_params)
        url = _init_url(mpd_url, mpd, period, adaptation, representation)
        if url and url not in found:
            found.append(url)
    return found


def _representations(mpd):
    for period in _children(mpd, "Period"):
        for adaptation in _children(period, "AdaptationSet"):
            for representation in _children(adaptation, "Representation"):
                yield period, adaptation, representation


def _init_url(mpd_url, mpd, period, adaptation, representation) -> InitSegment | None:
    base = _base(mpd_url, mpd, period, adaptation, representation)
    kind, info = _segment_info(period, adaptation, representation)
    if kind == "SegmentTemplate" and info.getAttribute("initialization"):
        return InitSegment(urljoin(base, _substitute(info.getAttribute("initialization"), representation)))
    if kind == "SegmentList":
        init = _first(info, "Initialization")
        if init is not None:
            url = urljoin(base, init.getAttribute("sourceURL")) if init.getAttribute("sourceURL") else base
            first, last = _range(init.getAttribute("range"))
            return InitSegment(url, first, last)
    return None


def _range(value: str) -> tuple[int | None, int | None]:
    """A DASH byte range `first-last` (last may be absent); (None, None) for none."""
    if not value:
        return None, None
    first, _, last = value.partition("-")
    try:
        return int(first), int(last) if last else None
    except ValueError:
        raise MalformedInput(f"the MPD has a bad byte range {value!r}") from None


def rewrite(data: bytes | str, mpd_url: str, name: str, param_text: str,
            tracks: dict[InitSegment, tuple[int, ...]] | None = None) -> MpdRewrite:
    """The audio-only MPD of `data` fetched from `mpd_url`, for a client whose audio parameter is
    `name`, written as `param_text`. `tracks`: the audio track IDs of each init segment `init_segments`
    named, so that media segments (no moov of their own) name them."""
    doc = _parse(data)
    mpd = doc.documentElement
    if mpd.localName != "MPD":
        raise MalformedInput(f"the document's root is <{mpd.tagName}>, not an MPD")
    result = MpdRewrite(None)
    tracks = tracks or {}
    for period in _children(mpd, "Period"):
        for adaptation in _children(period, "AdaptationSet"):
            kept = []
            for representation in _children(adaptation, "Representation"):
                kind = _kind(period, adaptation, representation)
                if kind == "other":
                    _remove(representation)
                else:
                    kept.append((representation, kind))
            if not kept:
                _remove(adaptation)
                continue
            if any(kind == "muxed" for _, kind in kept):
                _declare_audio_only(period, adaptation, [r for r, _ in kept])
            for representation, kind in kept:
                # One that is audio only by its own attributes is served as the origin has it: its
                # segments, file and byte ranges are audio already (no parameter, no init to read).
                if kind == "muxed" and not _add_params(result, mpd_url, mpd, period, adaptation, representation,
                                                       name, param_text, tracks):
                    result.needs_file_plan = []
                    return result
        if not _children(period, "AdaptationSet"):
            # A Period with nothing left would be silence (or a player's error) in the middle of the
            # programme: the origin's MPD, with its video, is the better answer.
            result.warnings.append(f"Period {period.getAttribute('id') or '?'} has no audio: the origin's MPD "
                                   f"passes through unchanged, with its video")
            result.needs_file_plan = []
            return result
    result.text = _serialize(doc, data)
    return result


def _declare_audio_only(period, adaptation, representations) -> None:
    """A set of muxed Representations said to be audio: codecs, mimeType, contentType, no video fields,
    no video SubRepresentations, a bandwidth for the audio (as HLS BANDWIDTH: common.audio_bandwidth)."""
    for representation in representations:
        _fix_bandwidth_identifier(period, adaptation, representation)
        measured = 0  # what the audio SubRepresentations say they need, when they say it
        for sub in _children(representation, "SubRepresentation"):
            if sub.hasAttribute("codecs") and not audio_codecs(sub.getAttribute("codecs")):
                _remove(sub)
            elif sub.getAttribute("bandwidth").isdigit():
                measured += int(sub.getAttribute("bandwidth"))
        bandwidth = representation.getAttribute("bandwidth")
        if bandwidth.isdigit():
            audio = audio_codecs(_attr("codecs", adaptation, representation))
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
    for component in _children(adaptation, "ContentComponent"):
        if component.getAttribute("contentType") not in ("audio", ""):
            _remove(component)


def _fix_bandwidth_identifier(period, adaptation, representation) -> None:
    """A SegmentTemplate naming files by $Bandwidth$ names them by the origin's @bandwidth: before that
    figure is changed, the Representation gets a template of its own with the figure written in."""
    kind, info = _segment_info(period, adaptation, representation)
    if kind != "SegmentTemplate" or not any(_BANDWIDTH_IDENTIFIER.search(info.getAttribute(a))
                                            for a in TEMPLATE_URL_ATTRIBUTES):
        return
    bandwidth = representation.getAttribute("bandwidth")
    if not bandwidth.isdigit():
        return  # a figure that is not one is left as it is (see below), so the template still holds
    if info.parentNode is not representation:
        info = info.cloneNode(True)
        representation.insertBefore(info, representation.firstChild)
    for attribute in TEMPLATE_URL_ATTRIBUTES:
        if info.hasAttribute(attribute):
            info.setAttribute(attribute, _BANDWIDTH_IDENTIFIER.sub(
                lambda m: bandwidth.zfill(int(m.group(1) or 0)), info.getAttribute(attribute)))


def _add_params(result, mpd_url, mpd, period, adaptation, representation, name, param_text, tracks) -> bool:
    """The parameter on every URL of a muxed Representation; False (with a warning) when its media
    segments carry no moov and the audio track IDs of its init are not known: our server could not
    filter them (a moof without its moov), so the origin's MPD must pass through instead."""
    kind, info = _segment_info(period, adaptation, representation)
    base = _base(mpd_url, mpd, period, adaptation, representation)
    segment_params = [param_text]
    init = _init_url(mpd_url, mpd, period, adaptation, representation)
    if init is not None:
        if init not in tracks:
            result.warnings.append(f"no audio track IDs for the init segment {init.url} (Representation "
                                   f"{representation.getAttribute('id')}): its media segments cannot be served "
                                   f"audio only, so the origin's MPD passes through unchanged, with its video")
            return False
        segment_params.append(track_param(name, tracks[init]))
    if kind == "SegmentTemplate":
        if info.parentNode is not representation:  # each Representation its own track list
            info = info.cloneNode(True)
            representation.insertBefore(info, representation.firstChild)
        if info.getAttribute("index"):
            result.warnings.append(f"Representation {representation.getAttribute('id')} has index segments "
                                   f"(SegmentTemplate@index): their sizes name the origin's media segments, not ours")
        for attribute, params in (("media", segment_params), ("index", [param_text]),
                                  ("initialization", [param_text]), ("bitstreamSwitching", [param_text])):
            if info.getAttribute(attribute) and info.getAttribute(attribute) not in ("true", "false"):
                info.setAttribute(attribute, with_params(info.getAttribute(attribute), params))
    elif kind == "SegmentList":
        if info.parentNode is not representation:
            info = info.cloneNode(True)
            representation.insertBefore(info, representation.firstChild)
        for element in _children(info, "Initialization") + _children(info, "RepresentationIndex"):
            _ranged_url(element, "sourceURL", "range", base, [param_text], name)
        for segment in _children(info, "SegmentURL"):
            _ranged_url(segment, "media", "mediaRange", base, segment_params, name)
            if segment.hasAttribute("index") or segment.hasAttribute("indexRange"):
                _ranged_url(segment, "index", "indexRange", base, segment_params, name)
    else:
        _leaf_base_url(mpd_url, mpd, period, adaptation, representation, param_text)
        if kind == "SegmentBase" and (info.hasAttribute("indexRange") or _first(info, "Initialization")):
            result.needs_file_plan.append(NeedsFilePlan(period.getAttribute("id") or None,
                                                        representation.getAttribute("id") or None,
                                                        with_params(base, [param_text])))
    return True


def _ranged_url(element, url_attribute: str, range_attribute: str, base: str, params: list[str], name: str) -> None:
    """A SegmentList URL with its byte range moved into the URI (as an HLS byte range: its offsets do
    not hold once video is removed). Without a URL of its own it names the BaseURL's file: that
    file's name (relative to the BaseURL, so it stays relative) is written out."""
    url = element.getAttribute(url_attribute) or base.rsplit("/", 1)[-1]
    extra = []
    if element.hasAttribute(range_attribute):
        first, last = _range(element.getAttribute(range_attribute))
        extra = [range_param(name, first, last)]
        element.removeAttribute(range_attribute)
    element.setAttribute(url_attribute, with_params(url, params + extra))


def _leaf_base_url(mpd_url, mpd, period, adaptation, representation, param_text: str) -> None:
    """A Representation whose file is its BaseURL: the innermost BaseURL elements (several are
    alternatives) carry the parameter. One inherited from an outer level (which may be shared) stays
    as it is, and the Representation gets a BaseURL of its own that resolves against it to the same
    file with the parameter: the file's last path segment (as `_ranged_url` does), or, when the
    alternatives name different files, each one's absolute URL (a player may pair any outer
    alternative with any inner one, ISO/IEC 23009-1 §5.6.5)."""
    levels = (mpd, period, adaptation, representation)
    for depth in range(len(levels) - 1, -1, -1):
        bases = _children(levels[depth], "BaseURL")
        if bases:
            break
    else:
        return
    if depth < len(levels) - 1:
        outside = _base(mpd_url, *levels[:depth])
        files = [urljoin(outside, _text(base)) for base in bases]
        segments = {_last_segment(url) for url in files}
        pairs = [(bases[0], segments.pop())] if len(segments) == 1 else list(zip(bases, files))
        first = representation.firstChild
        for base, text in pairs:
            copy = base.cloneNode(False)
            copy.appendChild(copy.ownerDocument.createTextNode(text))
            representation.insertBefore(copy, first)
        bases = _children(representation, "BaseURL")
    for base in bases:
        _set_text(base, with_params(_text(base), [param_text]))


def _last_segment(url: str) -> str:
    """The relative reference that resolves against `url` to itself without its fragment: its last
    path segment and query (RFC 3986 §5.2.2; './' keeps a segment with a colon from reading as a scheme)."""
    parts = urlsplit(url)
    last = parts.path.rsplit("/", 1)[-1]
    if ":" in last:
        last = "./" + last
    return last + (f"?{parts.query}" if parts.query else "")


def _serialize(doc, data: bytes | str) -> str:
    head = data[:200].decode("utf-8", "replace") if isinstance(data, bytes) else data[:200]
    declaration = _XML_DECLARATION.match(head.lstrip("\ufeff"))
    try:
        body = "".join(node.toxml() for node in doc.childNodes)
    except RecursionError:  # (_check_depth keeps this from happening; a clean error if it ever does)
        raise MalformedInput("the MPD's elements are nested too deeply to write out") from None
    return (declaration.group(0) + "\n" if declaration else "") + body + "\n"


def set_index_ranges(data: bytes | str, period: str | None, representation: str, init_size: int,
                     index_first: int, index_last: int) -> str:
    """The MPD with one SegmentBase Representation's Initialization@range and indexRange set to those of
    our audio-only file (from its plan: the moov ends at init_size, the sidx is index_first..index_last)."""
    doc = _parse(data)
    mpd = doc.documentElement
    for p, adaptation, rep in _representations(mpd):
        if rep.getAttribute("id") != representation or (period is not None and p.getAttribute("id") != period):
            continue
        kind, info = _segment_info(p, adaptation, rep)
        if kind != "SegmentBase":
            raise MalformedInput(f"Representation {representation} has no SegmentBase")
        if info.parentNode is not rep:
            info = info.cloneNode(True)
            rep.insertBefore(info, rep.firstChild)
        info.setAttribute("indexRange", f"{index_first}-{index_last}")
        init = _first(info, "Initialization")
        if init is None:
            init = doc.createElementNS(info.namespaceURI, info.tagName.replace("SegmentBase", "Initialization"))
            info.appendChild(init)
        init.setAttribute("range", f"0-{init_size - 1}")
        return _serialize(doc, data)
    raise MalformedInput(f"the MPD has no Representation {representation!r}")


def drop_representation(data: bytes | str, period: str | None, representation: str) -> str:
    """The MPD without one Representation (its AdaptationSet too when it was the last): what the addon
    does to a SegmentBase Representation whose audio-only file's index ranges it cannot know. NoAudio
    (an ExtractError: the addon passes the origin's MPD through) when its Period would be left empty."""
    doc = _parse(data)
    for p, adaptation, rep in _representations(doc.documentElement):
        if rep.getAttribute("id") == representation and (period is None or p.getAttribute("id") == period):
            _remove(rep)
            if not _children(adaptation, "Representation"):
                _remove(adaptation)
            if not _children(p, "AdaptationSet"):
                raise NoAudio(f"without Representation {representation} Period {p.getAttribute('id') or '?'} has "
                              f"no audio left: the origin's MPD must pass through instead")
            return _serialize(doc, data)
    raise MalformedInput(f"the MPD has no Representation {representation!r}")
