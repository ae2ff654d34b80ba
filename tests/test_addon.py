"""The addon's decisions, with mitmproxy's own test helpers (no sockets)."""

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils

from addon.audio_only import AudioOnly
from addon.request_rules import split_param
from addon.response import derived_etag
from addon.stream import ExtractionStream


@pytest.mark.parametrize("path,value,rest", [
    ("/v.flv?ali_audio_only=1", "1", "/v.flv"),
    ("/v.flv?a=1&ali_audio_only=01&b=2", "01", "/v.flv?a=1&b=2"),
    ("/v.flv?ali_audio_only=&x", "", "/v.flv?x"),
    ("/v.flv?ali_audio_only", "", "/v.flv"),
    ("/v.flv?ali_audio_only=1&ali_audio_only=0", "1", "/v.flv"),
    ("/v.flv?xali_audio_only=1", None, "/v.flv?xali_audio_only=1"),
    ("/v.flv", None, "/v.flv"),
    ("/v.flv?ali%5Faudio%5Fonly=%31&a=%5F", "1", "/v.flv?a=%5F"),  # every spelling of the name is ours
    ("/v.flv?a=1&ali_audio%5fonly=1&ali_audio_only=0", "1", "/v.flv?a=1"),
])
def test_split_param(path, value, rest):
    assert split_param(path, "ali_audio_only") == (value, rest)


@pytest.mark.parametrize("etag,new", [('"abc"', '"abc-audio"'), ('W/"abc"', 'W/"abc-audio"'), ("abc", "")])
def test_derived_etag(etag, new):
    assert derived_etag(etag) == new


def flow_for(path: str, host: str = "example.com", ctype: str = "video/x-flv", http_version="HTTP/1.1"):
    f = tflow.tflow(resp=tutils.tresp(headers=[(b"content-type", ctype.encode()), (b"content-length", b"1000"),
                                                (b"accept-ranges", b"bytes"), (b"etag", b'"e1"')]))
    f.request.path = path
    f.request.host = host
    f.request.headers["host"] = host
    f.request.http_version = http_version
    f.request.headers["range"] = "bytes=0-10"
    return f


def test_request_and_response_rules():
    addon = AudioOnly()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, audio_only_domains=["*.example.com"])
        f = flow_for("/v.flv?ali_audio_only=1", host="cdn.example.com")
        addon.requestheaders(f)
        assert f.request.path == "/v.flv" and "range" not in f.request.headers
        addon.responseheaders(f)
        h = f.response.headers
        assert isinstance(f.response.stream, ExtractionStream)
        assert h["transfer-encoding"] == "chunked" and "content-length" not in h and "accept-ranges" not in h
        assert h["etag"] == '"e1-audio"'

        other = flow_for("/v.flv?ali_audio_only=1", host="example.org")
        addon.requestheaders(other)
        assert other.request.path == "/v.flv" and "range" in other.request.headers
        addon.responseheaders(other)
        assert other.response.headers["content-length"] == "1000" and other.response.stream is True


@pytest.mark.parametrize("method,extracted", [("GET", True), ("HEAD", True), ("POST", False), ("PUT", False)])
def test_only_get_and_head_are_extracted(method, extracted):
    addon = AudioOnly()
    with taddons.context(addon):
        f = flow_for("/v.flv?ali_audio_only=1")
        f.request.method = method
        addon.requestheaders(f)
        addon.responseheaders(f)
        assert f.request.path == "/v.flv"
        assert ("passthrough" not in f.metadata["audio_only"]) == extracted
        assert (f.response.headers.get("content-type") == "video/x-flv"
                and "content-length" not in f.response.headers) == extracted


def test_mp4_output_is_audio_mp4():
    addon = AudioOnly()
    with taddons.context(addon):
        f = flow_for("/v.mp4?ali_audio_only=1", ctype="video/mp4")
        addon.requestheaders(f)
        addon.responseheaders(f)
        assert f.response.headers["content-type"] == "audio/mp4"


def test_http2_clients_get_no_transfer_encoding():
    addon = AudioOnly()
    with taddons.context(addon):
        f = flow_for("/v.flv?ali_audio_only=1", http_version="HTTP/2.0")
        addon.requestheaders(f)
        addon.responseheaders(f)
        assert "transfer-encoding" not in f.response.headers and callable(f.response.stream)


@pytest.mark.parametrize("ctype,path,extracted", [
    ("video/x-flv", "/a", True),
    ("application/octet-stream", "/a.flv", True),
    ("application/octet-stream", "/a.bin", False),
    ("text/html", "/a.flv", False),
    ("video/mp4", "/a", True),
    ("application/octet-stream", "/a.m4a", True),
    ("image/png", "/a.mp4", False),
])
def test_eligibility_by_type_and_extension(ctype, path, extracted):
    addon = AudioOnly()
    with taddons.context(addon):
        f = flow_for(path + "?ali_audio_only=1", ctype=ctype)
        addon.requestheaders(f)
        addon.responseheaders(f)
        assert callable(f.response.stream) == extracted


def test_stream_failure_kills_the_flow_and_names_the_reason():
    addon = AudioOnly()
    with taddons.context(addon):
        f = flow_for("/v.flv?ali_audio_only=1")
        f.live = True
        addon.requestheaders(f)
        addon.responseheaders(f)
        assert f.response.stream(b"<html>nope</html>") == []
        assert f.error and f.error.msg == "Connection killed."
        assert "neither FLV nor MP4" in f.comment and "neither FLV" in f.metadata["audio_only"]["error"]
        assert f.response.stream(b"more") == [] and f.response.stream(b"") == []
        addon.error(f)
        assert f.error.msg.startswith("audio-only: body is neither")


@pytest.mark.parametrize("option,value,message", [
    ("audio_only_domains", ["exa mple.com"], "not a host pattern"),
    ("audio_only_max_header", "lots", "audio_only_max_header"),
    ("audio_only_max_header", "10", "below 1.0 KiB"),
    ("audio_only_max_spool", "-5", "audio_only_max_spool"),
    ("audio_only_spool_dir", "/nonexistent/x", "not a folder"),
    ("audio_only_param", "", "must not be empty"),
])
def test_bad_options_are_refused(option, value, message):
    addon = AudioOnly()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(addon, **{option: value})


def extracted_flow(addon: AudioOnly, name: str, ctype: str, status: int = 200):
    """A flow for MEDIA/name?ali_audio_only=1 through the addon's hooks, the body fed whole."""
    from helpers import MEDIA
    data = (MEDIA / name).read_bytes()
    f = flow_for(f"/{name}?ali_audio_only=1", ctype=ctype)
    f.response.status_code = status
    f.response.headers["content-length"] = str(len(data))
    addon.requestheaders(f)
    addon.responseheaders(f)
    if callable(f.response.stream):
        f.response.stream(data)
        f.response.stream(b"")
    return f, data


def test_marks_comments_and_the_summary(caplog):
    from helpers import extract
    addon = AudioOnly()
    with taddons.context(addon):
        f, data = extracted_flow(addon, "h264_aac.mp4", "video/mp4")
        addon.response(f)
        out = len(extract(data))
        assert f.marked == ":headphones:"
        assert f.comment == f"audio only: {len(data) / 1e3:.1f} kB -> {out / 1e3:.1f} kB ({1 - out / len(data):.1%} saved)"

        passed, _ = extracted_flow(addon, "h264_aac.mp4", "video/mp4", status=206)
        addon.response(passed)
        assert passed.marked == "" and passed.comment == "audio only: not extracted: origin answered 206"

        failed = flow_for("/v.flv?ali_audio_only=1")
        failed.live = True
        addon.requestheaders(failed)
        addon.responseheaders(failed)
        failed.response.stream(b"<html>nope</html>")
        addon.error(failed)
        assert failed.marked == ":warning:" and "neither FLV nor MP4" in failed.comment

        caplog.set_level("INFO")
        addon.marks.done()
        assert (f"audio-only: 1 responses extracted, 1 passed through, 1 failed; {len(data) / 1e3:.1f} kB -> "
                f"{out / 1e3:.1f} kB") in caplog.text
