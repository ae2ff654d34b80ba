"""The MP4/FLV/TS content view, rendered by mitmproxy's own machinery (the "auto" choice included), on
whichever mitmproxy line is installed (the suite runs on 11.0 and on 12.x)."""

from mitmproxy import contentviews
from mitmproxy.test import taddons, tflow, tutils

from addon.audio_only import AudioOnly
from addon.contentview import NAME
from helpers import MEDIA, extract


def rendered(body: bytes, ctype: str) -> tuple[str, str]:
    """(the name of the view mitmproxy picks by itself, the text it shows) for a response body."""
    flow = tflow.tflow(resp=tutils.tresp(headers=[(b"content-type", ctype.encode())], content=body))
    if hasattr(contentviews, "prettify_message"):  # mitmproxy 12
        result = contentviews.prettify_message(flow.response, flow)
        return result.view_name or "", result.text
    description, lines, error = contentviews.get_message_content_view("auto", flow.response, flow)  # 11
    assert error is None, error
    return description, "\n".join("".join(text for _, text in line) for line in lines)


def test_an_original_mp4_and_its_audio_only_output():
    addon = AudioOnly()
    with taddons.context(addon):
        data = (MEDIA / "h264_aac.mp4").read_bytes()
        view, text = rendered(data, "video/mp4")
        assert view in (NAME, "MP4/FLV/TS"), view
        assert "tracks: video avc1 6.00 s, audio mp4a 6.02 s" in text
        assert "audio extraction keeps: audio mp4a" in text and "and drops: video avc1" in text
        assert "\n    moov 6390\n" in text and "this product: yes, 75528 bytes of output (73.8% saved)" in text

        view, text = rendered(extract(data), "audio/mp4")
        assert "tracks: audio mp4a 6.02 s" in text and "and drops: nothing" in text


def test_an_flv_and_a_page_that_is_neither():
    addon = AudioOnly()
    with taddons.context(addon):
        view, text = rendered((MEDIA / "h264_aac.flv").read_bytes(), "video/x-flv")
        assert "tracks: audio aac, video h264" in text and "drops: video tags (h264)" in text
        view, text = rendered(b"<html><body>hello</body></html>", "text/html")
        assert view not in (NAME, "MP4/FLV/TS") and "tracks:" not in text


def test_an_mpeg_ts_and_its_audio_only_output():
    import tsmedia

    addon = AudioOnly()
    with taddons.context(addon):
        data = tsmedia.make("h264_aac.ts").read_bytes()
        view, text = rendered(data, "video/mp2t")
        assert view in (NAME, "MP4/FLV/TS"), view
        assert "body: MPEG-TS" in text and "PCR PID 256 (video: kept as PCR-only packets)" in text
        assert "and drops: video h.264 (PID 256, type 0x1b)" in text
        view, text = rendered(extract(data), "video/mp2t")
        assert view in (NAME, "MP4/FLV/TS"), view
        assert "tracks: audio aac (adts) (PID 257, type 0x0f)" in text and "video" not in text.split("tracks:")[1].split("\n")[0]
