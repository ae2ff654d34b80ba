"""An MPD as a tree: parsed safely, walked, and written back as it came.

The MPD is untrusted XML: it is parsed by defusedxml, which refuses entity declarations (the billion
laughs, external entities) instead of expanding them, and an MPD nested deeper than any real one is
refused before minidom's recursive writing could fail on it. The DOM is minidom's: it keeps every
element's and attribute's qualified name as written, so namespaces and their prefixes, comments and the
text between elements come out as they came in; only what is rewritten changes.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from xml.dom import minidom
from xml.parsers.expat import ExpatError

import defusedxml
import defusedxml.minidom

from ..errors import MalformedInput

_XML_DECLARATION = re.compile(r"<\?xml[^>]*\?>")
MAX_DEPTH = 100  # elements within elements (see _check_depth)


def parse(data: bytes | str) -> minidom.Document:
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


def children(node, name: str) -> list:
    return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.localName == name]


def first(node, name: str):
    found = children(node, name)
    return found[0] if found else None


def remove(node) -> None:
    """An element out of its parent, with the indentation before it (the layout stays tidy)."""
    parent, before = node.parentNode, node.previousSibling
    if before is not None and before.nodeType == before.TEXT_NODE and not before.data.strip():
        parent.removeChild(before)
    parent.removeChild(node)


def text(node) -> str:
    return "".join(c.data for c in node.childNodes if c.nodeType in (c.TEXT_NODE, c.CDATA_SECTION_NODE)).strip()


def set_text(node, text: str) -> None:
    for child in list(node.childNodes):
        node.removeChild(child)
    node.appendChild(node.ownerDocument.createTextNode(text))


def base(url: str, *nodes) -> str:
    """The BaseURL in effect below `nodes` (outermost first), absolute."""
    for node in nodes:
        base = first(node, "BaseURL")
        if base is not None:
            url = urljoin(url, text(base))
    return url


def attr(name: str, *nodes) -> str | None:
    """The attribute from the innermost node that has it (a Representation inherits its set's)."""
    for node in reversed(nodes):
        if node.hasAttribute(name):
            return node.getAttribute(name)
    return None


def segment_info(*nodes):
    """(kind, element) of the innermost SegmentTemplate/SegmentList/SegmentBase, or (None, None)."""
    for node in reversed(nodes):
        for kind in ("SegmentTemplate", "SegmentList", "SegmentBase"):
            found = first(node, kind)
            if found is not None:
                return kind, found
    return None, None


def representations(mpd):
    for period in children(mpd, "Period"):
        for adaptation in children(period, "AdaptationSet"):
            for representation in children(adaptation, "Representation"):
                yield period, adaptation, representation


def byte_range(value: str) -> tuple[int | None, int | None]:
    """A DASH byte range `first-last` (last may be absent); (None, None) for none."""
    if not value:
        return None, None
    first, _, last = value.partition("-")
    try:
        return int(first), int(last) if last else None
    except ValueError:
        raise MalformedInput(f"the MPD has a bad byte range {value!r}") from None


def serialize(doc, data: bytes | str) -> str:
    head = data[:200].decode("utf-8", "replace") if isinstance(data, bytes) else data[:200]
    declaration = _XML_DECLARATION.match(head.lstrip("\ufeff"))
    try:
        body = "".join(node.toxml() for node in doc.childNodes)
    except RecursionError:  # (_check_depth keeps this from happening; a clean error if it ever does)
        raise MalformedInput("the MPD's elements are nested too deeply to write out") from None
    return (declaration.group(0) + "\n" if declaration else "") + body + "\n"
