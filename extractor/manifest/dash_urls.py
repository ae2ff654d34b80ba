"""The URLs of a muxed DASH Representation given the parameter: its SegmentTemplate, SegmentList or
BaseURL, its init segment's audio track IDs on its media segments, and byte ranges moved into the URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from . import mpd_tree as tree
from .common import InitSegment, range_param, track_param, with_params

_BANDWIDTH_IDENTIFIER = re.compile(r"\$Bandwidth(?:%0(\d+)d)?\$")  # ISO/IEC 23009-1 §5.3.9.4.4, with its width
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


def init_url(mpd_url, mpd, period, adaptation, representation) -> InitSegment | None:
    base = tree.base(mpd_url, mpd, period, adaptation, representation)
    kind, info = tree.segment_info(period, adaptation, representation)
    if kind == "SegmentTemplate" and info.getAttribute("initialization"):
        return InitSegment(urljoin(base, _substitute(info.getAttribute("initialization"), representation)))
    if kind == "SegmentList":
        init = tree.first(info, "Initialization")
        if init is not None:
            url = urljoin(base, init.getAttribute("sourceURL")) if init.getAttribute("sourceURL") else base
            first, last = tree.byte_range(init.getAttribute("range"))
            return InitSegment(url, first, last)
    return None


def _substitute(template: str, representation) -> str:
    """A template with the identifiers fixed for a Representation ($Number$ and $Time$ stay)."""
    out = template.replace("$RepresentationID$", representation.getAttribute("id"))
    return out.replace("$Bandwidth$", representation.getAttribute("bandwidth"))


def fix_bandwidth_identifier(period, adaptation, representation) -> None:
    """A SegmentTemplate naming files by $Bandwidth$ names them by the origin's @bandwidth: before that
    figure is changed, the Representation gets a template of its own with the figure written in."""
    kind, info = tree.segment_info(period, adaptation, representation)
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


def add_params(result, mpd_url, mpd, period, adaptation, representation, name, param_text, tracks) -> bool:
    """The parameter on every URL of a muxed Representation; False (with a warning) when its media
    segments carry no moov and the audio track IDs of its init are not known: our server could not
    filter them (a moof without its moov), so the origin's MPD must pass through instead."""
    kind, info = tree.segment_info(period, adaptation, representation)
    base = tree.base(mpd_url, mpd, period, adaptation, representation)
    segment_params = [param_text]
    init = init_url(mpd_url, mpd, period, adaptation, representation)
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
        for element in tree.children(info, "Initialization") + tree.children(info, "RepresentationIndex"):
            _ranged_url(element, "sourceURL", "range", base, [param_text], name)
        for segment in tree.children(info, "SegmentURL"):
            _ranged_url(segment, "media", "mediaRange", base, segment_params, name)
            if segment.hasAttribute("index") or segment.hasAttribute("indexRange"):
                _ranged_url(segment, "index", "indexRange", base, segment_params, name)
    else:
        _leaf_base_url(mpd_url, mpd, period, adaptation, representation, param_text)
        if kind == "SegmentBase" and (info.hasAttribute("indexRange") or tree.first(info, "Initialization")):
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
        first, last = tree.byte_range(element.getAttribute(range_attribute))
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
        bases = tree.children(levels[depth], "BaseURL")
        if bases:
            break
    else:
        return
    if depth < len(levels) - 1:
        outside = tree.base(mpd_url, *levels[:depth])
        files = [urljoin(outside, tree.text(base)) for base in bases]
        segments = {_last_segment(url) for url in files}
        pairs = [(bases[0], segments.pop())] if len(segments) == 1 else list(zip(bases, files))
        first = representation.firstChild
        for base, text in pairs:
            copy = base.cloneNode(False)
            copy.appendChild(copy.ownerDocument.createTextNode(text))
            representation.insertBefore(copy, first)
        bases = tree.children(representation, "BaseURL")
    for base in bases:
        tree.set_text(base, with_params(tree.text(base), [param_text]))


def _last_segment(url: str) -> str:
    """The relative reference that resolves against `url` to itself without its fragment: its last
    path segment and query (RFC 3986 §5.2.2; './' keeps a segment with a colon from reading as a scheme)."""
    parts = urlsplit(url)
    last = parts.path.rsplit("/", 1)[-1]
    if ":" in last:
        last = "./" + last
    return last + (f"?{parts.query}" if parts.query else "")
