"""What the client asked for: the parameter, the domains it is on for, the seek parameters.

Decided in `requestheaders` (fail_closed.py calls `decide`), before the request leaves for the
origin: the origin never sees our parameter or the seek parameters (it would seek too). The decision
begins the flow's record (record.py) for the router and our server:

    requested=True, seek={"values": {"mp4_seek_start": "12.5", ...}, "by_time": False} or None
    plain=True, seek=...                 the CDN's plain video seeking, no audio extraction
    outcome="passed through", why=...    audio asked for, not extracted (a POST, a Range in cdn mode)
"""

from __future__ import annotations

import fnmatch
import logging
import urllib.parse

from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs

from addon import options, record
from addon.cdn_config import ConfigError, ConfigFile
from addon.options import RequestSettings

log = logging.getLogger("addon.audio_only")


def split_param(path: str, name: str) -> tuple[str | None, str]:
    """(the first value of query parameter `name` or None, the path with every `name` removed). Names
    and values are compared decoded: `ali%5Faudio%5Fonly=%31` is `ali_audio_only=1`, and is removed too."""
    base, sep, query = path.partition("?")
    if not sep:
        return None, path
    value, kept = None, []
    for part in query.split("&"):
        key, _, raw = part.partition("=")
        if urllib.parse.unquote_plus(key) == name:
            value = urllib.parse.unquote_plus(raw) if value is None else value
        else:
            kept.append(part)
    return value, base + ("?" + "&".join(kept) if kept else "")


def raw_param(path: str, name: str) -> str | None:
    """The first `name=value` part of the query as the client wrote it (its own encoding kept)."""
    for part in path.partition("?")[2].split("&"):
        if urllib.parse.unquote_plus(part.partition("=")[0]) == name:
            return part
    return None


def ask_for_the_whole_file(flow: http.HTTPFlow) -> None:
    """For a request that asked for audio but goes to the origin itself (not GET or HEAD, our server
    not up): a Range would give a slice of the video, an encoding a blob."""
    for name in ("range", "if-range"):
        flow.request.headers.pop(name, None)
    flow.request.headers["accept-encoding"] = "identity"


def client_host(flow: http.HTTPFlow) -> str:
    """The host the client asked for (Host or :authority, else the request's target), lowercase."""
    authority = flow.request.host_header or flow.request.host
    return url.parse_authority(authority, check=False)[0].lower() if authority else ""


class RequestRules:
    """The request side's settings (domains, the CDN configuration) and its decision per request. A part
    of the addon (AudioOnly.addons), before the router."""

    def __init__(self):
        self.settings: RequestSettings | None = None  # made at each configure (AudioOnly.configure)
        self.config: ConfigFile | None = None  # audio_only_config, when set

    @property
    def now(self) -> RequestSettings:
        """The settings (made from the options here when no configure has run: a test harness)."""
        return self.settings or options.request_settings(ctx.options)

    def configure(self, updated) -> None:
        if "audio_only_config" in updated:
            try:
                self.config = ConfigFile(ctx.options.audio_only_config) if ctx.options.audio_only_config else None
            except ConfigError as e:
                raise exceptions.OptionsError(f"audio_only_config: {e}") from None
        if "mode" in updated or "keep_host_header" in updated:
            keep_client_host()

    def in_domains(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, p) for p in self.now.domains)

    def host_enabled(self, host: str) -> bool:
        """Is audio extraction on for the host the client asked for (a hostname, lowercase)?
        audio_only_config decides when set, else audio_only_domains."""
        if self.config is not None:
            if message := self.config.maybe_reload():
                (log.warning if message.startswith("kept") else log.info)(f"audio-only: audio_only_config: {message}")
            settings = self.config.for_host(host)
            return settings is not None and settings.audio_only
        return self.in_domains(host)

    def decide(self, flow: http.HTTPFlow) -> None:
        """Take our parameters off the request and record in the flow's metadata what was asked for.
        (In requestheaders, by FailClosed: an exception here must not send the request on as it is.)"""
        host = client_host(flow)
        settings = self.now
        origin_host_for_reverse_mode(flow, settings.origin_host)
        param_text = raw_param(flow.request.path, settings.param)
        value, flow.request.path = split_param(flow.request.path, settings.param)
        # A playlist's segments name their audio tracks and byte ranges (extractor/manifest/common.py):
        # ours too, never the origin's.
        tracks, flow.request.path = split_param(flow.request.path, f"{settings.param}_track")
        byte_range, flow.request.path = split_param(flow.request.path, f"{settings.param}_range")
        # The origin never sees our parameters, whatever their values.
        if value != "1" or not self.host_enabled(host):
            self.maybe_plain_seek(flow, host)
            return
        if flow.request.method.upper() not in ("GET", "HEAD"):
            return not_extracted(flow, f"only GET and HEAD are, not {flow.request.method}")
        if settings.cdn and "range" in flow.request.headers:
            return not_extracted(flow, "the CDN does not extract audio for Range requests, so the origin's answer "
                                       "to the range passes through (audio_only_compat=cdn)")
        # The client's Range and conditionals stay on the request: our server answers them.
        segment = {"segment_tracks": tracks} if tracks else {}
        if byte_range:
            segment["byte_range"] = byte_range
        record.begin(flow, requested=True, seek=self.take_seek_params(flow, host), param_text=param_text, **segment)

    def maybe_plain_seek(self, flow: http.HTTPFlow, host: str) -> None:
        """The CDN's plain video seeking (no audio extraction): on for a host by its video_seek in
        audio_only_config, or by audio_only_plain_seek on the audio_only_domains."""
        settings = self.config.for_host(host) if self.config is not None else None
        if settings is not None:
            enabled = settings.seek.get("enable") == "on"
        else:
            enabled = self.now.plain_seek and self.in_domains(host)
        if not enabled:
            return
        names = set(self.seek_settings(host)[2].values())
        if not any(split_param(flow.request.path, name)[0] is not None for name in names):
            return
        record.begin(flow, plain=True, seek=self.take_seek_params(flow, host))

    def seek_settings(self, host: str) -> tuple[bool, bool, dict[str, str]]:
        """(seeking on, FLV by time, parameter names) for a host: the configuration's video_seek when it
        names the host, else the options."""
        now = self.now
        names = dict(now.seek_names)
        enabled, by_time = now.seek, now.flv_seek_by_time
        settings = self.config.for_host(host) if self.config is not None else None
        if settings is not None and settings.seek:
            enabled = settings.seek.get("enable", "on" if enabled else "off") == "on"
            by_time = settings.seek.get("flv_seek_by_time", "on" if by_time else "off") == "on"
            names.update({k: v for k, v in settings.seek.items() if k in names})
        return enabled, by_time, names

    def take_seek_params(self, flow: http.HTTPFlow, host: str) -> dict | None:
        """The raw start/end values of a request, removed from what the origin gets (it would seek
        too); None when seeking is off."""
        enabled, by_time, names = self.seek_settings(host)
        if not enabled:
            return None
        raw = {}
        for name in set(names.values()):  # MP4 and FLV share the default names: each is taken once
            raw[name], flow.request.path = split_param(flow.request.path, name)
        return {"values": {key: raw[name] for key, name in names.items()}, "by_time": by_time}


def not_extracted(flow: http.HTTPFlow, why: str) -> None:
    """Audio was asked for and will not be extracted: say why in the log and on the flow."""
    record.begin(flow, outcome=record.PASSED, why=why)
    log.info(f"audio-only: {flow.request.pretty_url}: not extracted: {why}")


def keep_client_host() -> None:
    """In reverse mode mitmproxy replaces Host before any hook sees it; domain patterns need the
    client's. So keep it (keep_host_header), and rewrite it in requestheaders as
    audio_only_origin_host says. The choice lives in options, not in an object, so it holds across a
    reload of the script."""
    reverse = any(mode_specs.ProxyMode.parse(m).type_name == "reverse" for m in ctx.options.mode)
    if reverse and not ctx.options.keep_host_header:
        ctx.options.keep_host_header = True


def origin_host_for_reverse_mode(flow: http.HTTPFlow, origin_host: str) -> None:
    """Reverse mode: give the origin the Host audio_only_origin_host says (see keep_client_host)."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode) and origin_host == "origin":
        flow.request.host_header = url.hostport(flow.request.scheme, flow.request.host, flow.request.port)
