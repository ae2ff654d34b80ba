"""CDN-shaped configuration, the cdn compatibility mode, and `python -m extractor check`."""

import json
import os
import subprocess
import sys
import time

import pytest

from addon.cdn_config import ConfigError, ConfigFile, parse
from helpers import MEDIA, MITMDUMP, ROOT, Proxy, extract, free_port, http_get


def cdn_config(*entries: tuple[str, str]) -> str:
    """A configuration in the CDN API's shape: (DomainNames, ali_video_split enable) per entry."""
    return json.dumps([
        {"DomainNames": names,
         "Functions": [{"functionName": "ali_video_split", "functionArgs": [{"argName": "enable", "argValue": on}]},
                       {"functionName": "video_seek", "functionArgs": [{"argName": "enable", "argValue": "on"},
                                                                       {"argName": "flv_seek_by_time", "argValue": "off"}]},
                       {"functionName": "referer_white_list_set", "functionArgs": [{"argName": "refer_domain_allow_list",
                                                                                    "argValue": "x.com"}]}]}
        for names, on in entries], indent=2)


def test_parse_and_match():
    domains = parse(cdn_config(("a.example.com,*.b.example.com", "on"), ("c.example.com", "off")), "cdn.json")
    assert [d.audio_only for d in domains] == [True, False]
    assert domains[0].matches("x.b.example.com") and not domains[0].matches("b.example.com")
    assert domains[0].seek == {"enable": "on", "flv_seek_by_time": "off"}


@pytest.mark.parametrize("text,message", [
    ('[{"DomainNames": "a.com",\n  "Functions": [}]', "cdn.json, line 2: not JSON"),
    ('[\n {"DomainNames": "",\n  "Functions": []}]', "cdn.json, line 2: DomainNames must be a non-empty string"),
    ('[{"DomainNames": "a.com", "Functions": [\n  {"functionName": "ali_video_split",\n   "functionArgs": '
     '[{"argName": "enable", "argValue": "yes"}]}]}]', "cdn.json, line 2: ali_video_split needs enable = on or off"),
    ('[{"DomainNames": "a b.com", "Functions": []}]', "'a b.com' is not a host pattern"),
    ('{"DomainNames": "a.com", "Functions": [\n\n  {"functionName": "video_seek", "functionArgs": '
     '[{"argName": "flv_seek_by_time", "argValue": "1"}]}]}', "cdn.json, line 3: video_seek flv_seek_by_time"),
])
def test_malformed_configurations_name_the_line(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text, "cdn.json")


def test_reload_picks_up_changes_and_keeps_the_last_good(tmp_path, monkeypatch):
    path = tmp_path / "cdn.json"
    path.write_text(cdn_config(("a.com", "on")))
    config = ConfigFile(str(path))
    monkeypatch.setattr("addon.cdn_config.RELOAD_EVERY", 0)
    assert config.for_host("a.com").audio_only and config.maybe_reload() is None
    path.write_text(cdn_config(("a.com", "off"), ("b.com", "on")))
    assert "reloaded" in config.maybe_reload()
    assert not config.for_host("a.com").audio_only and config.for_host("b.com").audio_only
    path.write_text('[{"DomainNames": 5}]')
    message = config.maybe_reload()
    assert message.startswith("kept the last good configuration") and "line 1" in message
    assert config.for_host("b.com").audio_only


@pytest.mark.e2e
def test_config_per_domain_and_reload_through_the_proxy(origin, tmp_path):
    """Regular proxy mode: the configuration turns the feature on for localhost and not 127.0.0.1;
    then a change is picked up, and a broken change keeps the last good configuration."""
    path = tmp_path / "cdn.json"
    path.write_text(cdn_config(("localhost", "on"), ("127.0.0.1", "off")))
    proxy = Proxy(tmp_path / "config.log", "--set", f"audio_only_config={path}")
    port = origin.server_address[1]
    audio, video = extract((MEDIA / "h264_aac.flv").read_bytes()), (MEDIA / "h264_aac.flv").read_bytes()

    def fetch(host: str) -> bytes:
        reply = http_get(proxy.port, f"http://{host}:{port}/h264_aac.flv?ali_audio_only=1", host=f"{host}:{port}")
        assert reply.clean
        return reply.body

    try:
        assert fetch("localhost") == audio and fetch("127.0.0.1") == video
        path.write_text(cdn_config(("localhost", "off"), ("127.0.0.1", "on")))
        os.utime(path, (time.time() + 5, time.time() + 5))
        time.sleep(1.1)
        assert fetch("localhost") == video and fetch("127.0.0.1") == audio
        path.write_text('[{"DomainNames": "localhost",\n  "Functions": 7}]')
        os.utime(path, (time.time() + 10, time.time() + 10))
        time.sleep(1.1)
        assert fetch("127.0.0.1") == audio  # the last good configuration still holds
        log = proxy.wait_for_log("kept the last good")
        assert "line 1: Functions must be a list" in log
    finally:
        proxy.stop()


@pytest.mark.e2e
def test_malformed_config_refuses_the_start(tmp_path):
    path = tmp_path / "cdn.json"
    path.write_text('[\n  {"DomainNames": "a.com",\n   "Functions": [{"functionName": "ali_video_split"}]}\n]')
    r = subprocess.run([str(MITMDUMP), "-s", str(ROOT / "addon" / "audio_only.py"), "-p", str(free_port()),
                        "--set", f"audio_only_config={path}"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert "line 3: ali_video_split needs enable = on or off" in out


@pytest.fixture(scope="module")
def cdn_proxy(origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "cdn.log", "--mode", f"reverse:{origin.url}", "--set", "audio_only_compat=cdn")
    yield p
    p.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("name,reason", [
    ("moov_end.mp4", "the moov comes after the media data: the CDN extracts audio only from MP4s"),
    ("wide.mp4", "has a 16-byte header: the CDN supports only 8-byte box headers"),
])
def test_cdn_mode_refuses_what_the_cdn_refuses(cdn_proxy, media_root, name, reason):
    reply = http_get(cdn_proxy.port, f"/{name}?ali_audio_only=1")
    assert reply.status == 200 and not reply.clean
    assert reason in cdn_proxy.wait_for_log(reason)


@pytest.mark.e2e
def test_cdn_mode_still_extracts_what_the_cdn_extracts(cdn_proxy):
    reply = http_get(cdn_proxy.port, "/h264_aac.mp4?ali_audio_only=1")
    assert reply.clean and reply.body == extract((MEDIA / "h264_aac.mp4").read_bytes())


@pytest.mark.e2e
def test_cdn_mode_passes_range_requests_through(cdn_proxy):
    reply = http_get(cdn_proxy.port, "/h264_aac.mp4?ali_audio_only=1&rng=1", headers={"Range": "bytes=0-99"})
    assert reply.status == 206 and reply.body == (MEDIA / "h264_aac.mp4").read_bytes()[:100]
    assert "the CDN does not extract audio for Range requests" in cdn_proxy.wait_for_log("Range requests")


def run_check(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "extractor", "check", *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name,cdn,container", [
    ("h264_aac.mp4", True, "MP4"), ("frag_two_audio.mp4", True, "MP4"), ("h264_aac.flv", True, "FLV"),
    ("moov_end.mp4", False, "MP4"), ("quicktime.mov", False, "MP4"),
])
def test_check_verdicts(name, cdn, container):
    r = run_check(MEDIA / name)
    assert r.returncode == (0 if cdn else 1), r.stdout + r.stderr
    assert f"{name}: {container}" in r.stdout
    assert f"CDN audio extraction: {'yes' if cdn else 'no'}" in r.stdout
    size = len(extract((MEDIA / name).read_bytes()))
    assert f"this product: yes, {size} bytes of output" in r.stdout


def test_check_describes_tracks_and_layout(media_root):
    r = run_check(MEDIA / "quicktime.mov", media_root / "wide.mp4", MEDIA / "video_only.mp4")
    assert r.returncode == 1
    assert "tracks: video avc1 4.00 s, audio mp4a 4.02 s, text text 4.00 s, timecode tmcd 4.00 s" in r.stdout
    assert "moov: after the media data" in r.stdout and "mdat header: 16 bytes" in r.stdout
    assert "16-byte (64-bit) header" in r.stdout
    assert "this product: no: the MP4 has no audio track" in r.stdout


def test_check_unreadable_file(tmp_path):
    r = run_check(tmp_path / "missing.mp4")
    assert r.returncode == 2 and "cannot read" in r.stderr


@pytest.mark.e2e
def test_video_seek_settings_from_the_config(origin, tmp_path):
    """A domain's video_seek (seconds, its own parameter names) overrides the options."""
    path = tmp_path / "cdn.json"
    path.write_text(json.dumps({"DomainNames": "localhost", "Functions": [
        {"functionName": "ali_video_split", "functionArgs": [{"argName": "enable", "argValue": "on"}]},
        {"functionName": "video_seek", "functionArgs": [
            {"argName": "enable", "argValue": "on"}, {"argName": "flv_seek_by_time", "argValue": "on"},
            {"argName": "flv_seek_start", "argValue": "ss"}, {"argName": "flv_seek_end", "argValue": "to"}]}]}))
    proxy = Proxy(tmp_path / "seek-config.log", "--set", f"audio_only_config={path}")
    port = origin.server_address[1]
    try:
        reply = http_get(proxy.port, f"http://localhost:{port}/h264_aac.flv?ali_audio_only=1&ss=2&to=3",
                         host=f"localhost:{port}")
    finally:
        proxy.stop()
    from extractor import SeekRange
    from test_seek import seek
    assert reply.clean and reply.body == seek((MEDIA / "h264_aac.flv").read_bytes(), SeekRange(2000, 3000, True))[0]
    assert origin.requests[-1][1] == "/h264_aac.flv"
