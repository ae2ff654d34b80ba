"""The addon's decisions, with mitmproxy's own test helpers (no sockets)."""

import pytest
from mitmproxy import ctx, exceptions, flow
from mitmproxy.proxy.layers.http import HttpErrorHook, HttpRequestHeadersHook, HttpResponseHeadersHook, HttpResponseHook
from mitmproxy.test import taddons, tflow, tutils

from addon import record
from addon.audio_only import AudioOnly
from addon.formats import BY_NAME, of_answer
from addon.http_rules import derived_etag
from addon.request_rules import split_param
from addon.server.origin_answer import audio_headers, why_not
from extractor import SeekRange


def hook(addon: AudioOnly, event) -> None:
    """A hook as mitmproxy calls it: on the addon, then on each of its parts (AudioOnly.addons)."""
    ctx.master.addons.invoke_addon_sync(addon, event)


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


def routing_addon() -> AudioOnly:
    addon = AudioOnly()
    addon.server.port = 9  # as if our server were listening (it starts with mitmproxy's `running`)
    return addon


def test_audio_requests_are_routed_to_our_server_and_others_are_not():
    addon = routing_addon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, audio_only_domains=["*.example.com"])
        f = flow_for("/v.flv?ali_audio_only=1", host="cdn.example.com")
        hook(addon, HttpRequestHeadersHook(f))
        assert f.request.path == "/v.flv"
        assert (f.request.host, f.request.port, f.server_conn.address) == ("127.0.0.1", 9, ("127.0.0.1", 9))
        job = addon.server.jobs[f.request.headers["x-audio-only-job"]]
        # The client's Range goes to our server as it is (a file answer obeys it), never to the origin.
        assert f.request.headers["range"] == "bytes=0-10"
        assert not any(name.lower() in ("range", "if-range") for name, _ in job.target.headers)
        # Our own request goes where mitmproxy's would have (tflow's server connection), for the same Host.
        assert job.target.route.host == "address" and job.target.path == "/v.flv" and job.answer == "stream"
        assert ("Host", "cdn.example.com") in job.target.headers

        other = flow_for("/v.flv?ali_audio_only=1", host="example.org")
        hook(addon, HttpRequestHeadersHook(other))
        assert other.request.path == "/v.flv" and "range" in other.request.headers and other.request.host == "example.org"
        hook(addon, HttpResponseHeadersHook(other))
        assert other.response.headers["content-length"] == "1000" and other.response.stream is True


@pytest.mark.parametrize("broken", ["request rules", "router"])
def test_a_request_that_asked_for_audio_fails_closed(monkeypatch, broken):
    """An exception on the request side (mitmproxy logs a hook's exception and goes on) must not send the
    origin a plain request for the video, whose answer the client would take for its audio: a 502."""
    from addon.origin_client import Target
    from addon.request_rules import RequestRules

    def boom(*args, **kwargs):
        raise RuntimeError("boom")
    if broken == "request rules":  # (after our parameter was taken off)
        monkeypatch.setattr(RequestRules, "take_seek_params", boom)
    else:
        monkeypatch.setattr(Target, "of", boom)
    addon = routing_addon()
    with taddons.context(addon):
        f = flow_for("/v.mp4?ali_audio_only=1")
        f.response = None
        hook(addon, HttpRequestHeadersHook(f))
        assert f.response is not None and f.response.status_code == 502
        assert f.request.host != "127.0.0.1" and "x-audio-only-job" not in f.request.headers
        assert f.metadata["audio_only"]["outcome"] == record.FAILED and "boom" in f.metadata["audio_only"]["why"]
        # A request that did not ask for audio goes on to the origin as before.
        other = flow_for("/v.mp4?a=1")
        other.response = None
        hook(addon, HttpRequestHeadersHook(other))
        assert other.response is None and other.request.path == "/v.mp4?a=1" and "audio_only" not in other.metadata


def test_audio_asked_for_before_our_server_listens_is_a_503_not_the_video():
    """mitmproxy opens its ports before the running hook starts our server: a request for audio then
    must not go to the origin (whose answer is the video)."""
    addon = AudioOnly()  # (server.port None: not listening)
    with taddons.context(addon):
        f = flow_for("/v.mp4?ali_audio_only=1")
        f.response = None
        hook(addon, HttpRequestHeadersHook(f))
        assert f.response is not None and f.response.status_code == 503
        assert f.response.headers["retry-after"] == "1" and f.metadata["audio_only"]["outcome"] == record.FAILED


@pytest.mark.parametrize("path,file", [("/v.mp4", True), ("/v.m4a", True), ("/v.flv", False), ("/v", False)])
def test_only_mp4_paths_try_the_file_path(path, file):
    addon = routing_addon()
    with taddons.context(addon):
        f = flow_for(path + "?ali_audio_only=1")
        hook(addon, HttpRequestHeadersHook(f))
        assert addon.server.jobs[f.request.headers["x-audio-only-job"]].answer == ("file" if file else "stream")


@pytest.mark.parametrize("method,extracted", [("GET", True), ("HEAD", True), ("POST", False), ("PUT", False)])
def test_only_get_and_head_are_extracted(method, extracted):
    addon = routing_addon()
    with taddons.context(addon):
        f = flow_for("/v.flv?ali_audio_only=1")
        f.request.method = method
        hook(addon, HttpRequestHeadersHook(f))
        assert f.request.path == "/v.flv"
        assert (f.metadata["audio_only"]["outcome"] != record.PASSED) == extracted
        assert (f.request.host == "127.0.0.1") == extracted


def test_output_headers():
    origin = [("Content-Type", "video/mp4"), ("Content-Length", "1000"), ("Accept-Ranges", "bytes"),
              ("ETag", '"e1"'), ("Transfer-Encoding", "chunked"), ("Access-Control-Allow-Origin", "*")]
    assert audio_headers(origin, BY_NAME["mp4"], None, plain=False) == [
        ("ETag", '"e1-audio"'), ("Access-Control-Allow-Origin", "*"), ("Content-Type", "audio/mp4")]
    assert audio_headers(origin, BY_NAME["mp4"], SeekRange(2000, None, True), plain=True) == [
        ("Content-Type", "video/mp4"), ("ETag", '"e1-seek-2000-"'), ("Access-Control-Allow-Origin", "*")]


def routed_answer(addon: AudioOnly, http_version: str, method: str = "GET"):
    """A flow routed to our server, with our server's streamed answer in."""
    f = flow_for("/v.flv?ali_audio_only=1", http_version=http_version)
    f.request.method = method
    hook(addon, HttpRequestHeadersHook(f))
    f.response.headers["x-audio-only-served"] = "stream"
    f.response.headers["transfer-encoding"] = "chunked"
    del f.response.headers["content-length"]
    hook(addon, HttpResponseHeadersHook(f))
    return f


@pytest.mark.parametrize("version,chunked", [("HTTP/1.1", True), ("HTTP/1.0", False), ("HTTP/2.0", False)])
def test_the_answer_is_framed_for_the_client(version, chunked):
    addon = routing_addon()
    with taddons.context(addon):
        f = routed_answer(addon, version)
        # The request shows where it was for, as the client sent it, and the body streams.
        assert (f.request.host, f.request.port, f.request.http_version) == ("example.com", 22, version)
        assert "x-audio-only-job" not in f.request.headers and "x-audio-only-served" not in f.response.headers
        assert ("transfer-encoding" in f.response.headers) == chunked and f.response.stream is True
        assert f.metadata["audio_only"]["served"] == "stream"


@pytest.mark.parametrize("ctype,path,fmt", [
    ("video/x-flv", "/a", "flv"),
    ("application/octet-stream", "/a.flv", "flv"),
    ("application/octet-stream", "/a.bin", None),
    ("text/html", "/a.flv", None),
    ("video/mp4", "/a", "mp4"),
    ("application/octet-stream", "/a.m4a", "mp4"),
    ("image/png", "/a.mp4", None),
    ("video/MP2T", "/a", "ts"),
    ("application/octet-stream", "/a.m2ts", "ts"),
])
def test_eligibility_by_type_and_extension(ctype, path, fmt):
    found = of_answer(ctype, path)
    assert (found.name if found else None) == fmt
    why = why_not(200, {"content-type": ctype}, found)
    assert (why is None) == (fmt is not None)
    if fmt is None:
        assert why == f"content type {ctype!r} is not MP4, FLV or TS"
    assert why_not(206, {"content-type": ctype}, BY_NAME["mp4"]) == "origin answered 206"
    assert why_not(200, {"content-encoding": "gzip"}, BY_NAME["mp4"]) == "origin body is gzip-encoded"


def test_a_failure_names_the_reason_on_the_flow():
    addon = routing_addon()
    with taddons.context(addon):
        f = routed_answer(addon, "HTTP/1.1")
        record.conclude(f.metadata["audio_only"], record.FAILED, "body is neither FLV nor MP4", format="flv")
        f.error = flow.Error("Server disconnected.")
        hook(addon, HttpErrorHook(f))
        assert f.error.msg == "audio-only: body is neither FLV nor MP4"
        assert f.marked == ":warning:" and "neither FLV nor MP4" in f.comment


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


def test_marks_comments_and_the_summary(caplog):
    addon = routing_addon()
    with taddons.context(addon):
        f = routed_answer(addon, "HTTP/1.1")
        record.conclude(f.metadata["audio_only"], record.EXTRACTED, format="flv", bytes_in=460_300_000, bytes_out=10_000_000)
        hook(addon, HttpResponseHook(f))
        assert f.marked == ":headphones:" and f.comment == "audio only: 460.3 MB -> 10.0 MB (97.8% saved)"

        passed = routed_answer(addon, "HTTP/1.1")
        record.conclude(passed.metadata["audio_only"], record.PASSED, "origin answered 206")
        hook(addon, HttpResponseHook(passed))
        assert passed.marked == "" and passed.comment == "audio only: not extracted: origin answered 206"

        failed = routed_answer(addon, "HTTP/1.1")
        record.conclude(failed.metadata["audio_only"], record.FAILED, "body is neither FLV nor MP4", format="flv")
        failed.error = flow.Error("Server disconnected.")
        hook(addon, HttpErrorHook(failed))
        assert failed.marked == ":warning:" and "neither FLV nor MP4" in failed.comment

        caplog.set_level("INFO")
        addon.marks.done()
        assert "audio-only: 1 responses extracted, 1 passed through, 1 failed; 460.3 MB -> 10.0 MB" in caplog.text


def test_a_flows_record_is_saved_with_it():
    """The flow's record (addon/record.py) is plain values: mitmproxy saves flows with their metadata
    (`-w`, mitmweb's save, as tnetstring), and reading them back gives the record, its outcome and its
    client target."""
    from mitmproxy.io import tnetstring

    addon = routing_addon()
    with taddons.context(addon):
        f = routed_answer(addon, "HTTP/1.1")
        record.conclude(f.metadata["audio_only"], record.EXTRACTED, format="flv", bytes_in=10, bytes_out=5)
        state = tnetstring.loads(tnetstring.dumps(f.get_state()))["metadata"]["audio_only"]
        assert state["outcome"] == record.EXTRACTED and state["served"] == "stream" and state["bytes_out"] == 5
        assert record.ClientTarget(*state["client"]) == record.ClientTarget("http", "example.com", 22, "example.com",
                                                                            "HTTP/1.1")


@pytest.mark.parametrize("asked,content_range,good", [
    ("100-", "bytes 100-199/*", True),  # an LL-HLS part still being written: its length unknown
    ("100-", "bytes 100-199/200", True),
    ("100-", "bytes 100-150/200", False),  # not to the end
    ("100-199", "bytes 100-199/*", True),
    ("100-199", "bytes 100-198/300", False),
    ("100-199", "bytes 101-199/300", False),
])
def test_a_segments_byte_range_answer_is_checked(asked, content_range, good):
    """`<name>_range`: the origin's 206 must be those bytes (a length of '*' once raised ValueError)."""
    from types import SimpleNamespace

    from addon.server.origin_answer import range_problem
    response = SimpleNamespace(status_code=206, headers={"content-range": content_range})
    assert (range_problem(SimpleNamespace(record={"byte_range": asked}), response) is None) == good
