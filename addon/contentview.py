"""A content view for MP4 and FLV bodies in mitmweb and the console, on both mitmproxy lines.

It shows what `python -m extractor check` says of a body (container, tracks with codecs and
durations, layout, the CDN's verdict and ours), what audio extraction keeps and drops, and for MP4
the box tree with sizes, read with the core's own parsers. Original and extracted bodies alike: an
extracted body is an MP4 or FLV too.

mitmproxy 12 has a new API (`mitmproxy.contentviews.Contentview`: `prettify`, `render_priority`
taking a Metadata); 11 the older one (`contentviews.base.View`: `__call__` giving lines,
`render_priority` taking keywords, and `add`/`remove`). `media_view()` gives the one this mitmproxy
takes. A body mitmproxy streamed is not kept (the view then has nothing to show): set mitmproxy 12's
`store_streamed_bodies`, or turn `audio_only_stream_passthrough` off for small files, to see them.
"""

from __future__ import annotations

from mitmproxy import contentviews

from extractor import ExtractError, detect
from extractor.check import describe

NAME = "MP4/FLV/TS (audio-only edge)"
# Above the generic views (hex, raw), below nothing a user would pick by hand for media.
PRIORITY = 2


def render(data: bytes) -> str:
    return "\n".join(describe(data, "body"))


def is_media(data: bytes) -> bool:
    try:
        head = bytes(data[: detect.TS_NEEDED])  # (a TS is known by several packets' sync bytes)
        return detect.detect(head, final=len(data) <= detect.TS_NEEDED) is not None
    except ExtractError:  # none of the formats: not ours to show
        return False


if hasattr(contentviews, "Contentview"):  # mitmproxy 12 and later

    class MediaView(contentviews.Contentview):
        name = NAME

        def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
            return render(data)

        def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
            return PRIORITY if is_media(data) else -1

    def register() -> MediaView:
        view = MediaView()
        contentviews.add(view)
        return view

    def unregister(view: MediaView) -> None:
        pass  # mitmproxy 12 replaces a view of the same name when the script loads again

else:  # mitmproxy 11
    from mitmproxy.contentviews import base

    class MediaView(base.View):  # type: ignore[no-redef]
        name = NAME

        def __call__(self, data: bytes, **metadata):
            return "MP4/FLV/TS", base.format_text(render(data))

        def render_priority(self, data: bytes, **metadata) -> float:
            return PRIORITY if is_media(data) else 0

    def register() -> MediaView:
        if (earlier := contentviews.get(NAME)) is not None:  # a script reload without a done() between
            contentviews.remove(earlier)
        view = MediaView()
        contentviews.add(view)
        return view

    def unregister(view: MediaView) -> None:
        if view in contentviews.views:
            contentviews.remove(view)
