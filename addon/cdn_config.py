"""The CDN API's domain configuration, brought over as it is (option audio_only_config).

    [{"DomainNames": "a.example.com,*.b.example.com",
      "Functions": [{"functionName": "ali_video_split",
                     "functionArgs": [{"argName": "enable", "argValue": "on"}]},
                    {"functionName": "video_seek", "functionArgs": [...]}]}]

A single object instead of a list is accepted too. Functions other than ali_video_split and
video_seek (a CDN configuration has many) are ignored. Errors name the line of the file.
"""

from __future__ import annotations

import fnmatch
import json
import json.decoder
import json.scanner
import os
import re
import time
from dataclasses import dataclass, field

from addon.formats import SEEK_KEYS

HOST_PATTERN = re.compile(r"^[a-z0-9*?\[\]._:-]+$")
ON_OFF = {"on": True, "off": False}
RELOAD_EVERY = 1.0  # seconds between checks of the file for changes


class ConfigError(ValueError):
    pass


@dataclass
class DomainSettings:
    patterns: list[str]
    line: int
    audio_only: bool = False  # ali_video_split enable
    seek: dict[str, str] = field(default_factory=dict)  # video_seek arguments, as given

    def matches(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, p) for p in self.patterns)


class _Obj(dict):
    """A JSON object that knows the line it starts on."""
    line = 0


def _loads(text: str):
    """json.loads, with each object carrying its line (json's pure-Python decoder, told where it is)."""
    decoder = json.JSONDecoder()

    def parse_object(s_and_end, *args):
        s, end = s_and_end
        obj, new_end = json.decoder.JSONObject(s_and_end, *args)
        wrapped = _Obj(obj)
        wrapped.line = s.count("\n", 0, end) + 1
        return wrapped, new_end

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder.decode(text)


def parse(text: str, source: str) -> list[DomainSettings]:
    try:
        document = _loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}, line {e.lineno}: not JSON: {e.msg}") from None
    entries = document if isinstance(document, list) else [document]
    return [_entry(e, source) for e in entries]


def _entry(entry, source: str) -> DomainSettings:
    def fail(obj, reason: str):
        raise ConfigError(f"{source}, line {getattr(obj, 'line', '?')}: {reason}")

    if not isinstance(entry, dict):
        fail(entry, "each entry must be an object with DomainNames and Functions")
    names = entry.get("DomainNames")
    if not isinstance(names, str) or not names.strip():
        fail(entry, "DomainNames must be a non-empty string like \"a.example.com,*.b.example.com\"")
    patterns = [p.strip().lower() for p in names.split(",") if p.strip()]
    for p in patterns:
        if not HOST_PATTERN.match(p):
            fail(entry, f"DomainNames: {p!r} is not a host pattern")
    settings = DomainSettings(patterns, entry.line)
    functions = entry.get("Functions", [])
    if not isinstance(functions, list):
        fail(entry, "Functions must be a list")
    for function in functions:
        if not isinstance(function, dict) or not isinstance(function.get("functionName"), str):
            fail(function if isinstance(function, dict) else entry, "each function needs a functionName")
        args = {}
        for arg in function.get("functionArgs", []):
            if not (isinstance(arg, dict) and isinstance(arg.get("argName"), str)
                    and isinstance(arg.get("argValue"), str)):
                fail(arg if isinstance(arg, dict) else function, "each functionArgs entry needs argName and argValue strings")
            args[arg["argName"]] = arg["argValue"]
        name = function["functionName"]
        if name == "ali_video_split":
            if args.get("enable") not in ON_OFF:
                fail(function, f"ali_video_split needs enable = on or off, not {args.get('enable')!r}")
            settings.audio_only = ON_OFF[args["enable"]]
        elif name == "video_seek":
            for key in ("enable", "flv_seek_by_time"):
                if key in args and args[key] not in ON_OFF:
                    fail(function, f"video_seek {key} must be on or off, not {args[key]!r}")
            for key in SEEK_KEYS:
                if key in args and not re.fullmatch(r"[A-Za-z0-9_.-]+", args[key]):
                    fail(function, f"video_seek {key} must be a parameter name, not {args[key]!r}")
            settings.seek = args
    return settings


class ConfigFile:
    """The file behind audio_only_config: read at start (errors refuse the start), re-read when it
    changes (errors keep the last good configuration)."""

    def __init__(self, path: str):
        self.path = path
        self.domains: list[DomainSettings] = []
        self._stamp = None
        self._checked = 0.0
        self.load()

    def _read(self) -> tuple[tuple, str]:
        info = os.stat(self.path)
        with open(self.path, encoding="utf-8") as f:
            return (info.st_mtime_ns, info.st_size), f.read()

    def load(self) -> None:
        try:
            stamp, text = self._read()
        except OSError as e:
            raise ConfigError(f"{self.path}: cannot read: {e.strerror}") from None
        self.domains = parse(text, self.path)
        self._stamp = stamp

    def maybe_reload(self) -> str | None:
        """Re-read the file if it changed (checked at most once a second); returns what to log."""
        now = time.monotonic()
        if now - self._checked < RELOAD_EVERY:
            return None
        self._checked = now
        try:
            info = os.stat(self.path)
            if (info.st_mtime_ns, info.st_size) == self._stamp:
                return None
            stamp, text = self._read()
            self.domains = parse(text, self.path)
        except (OSError, ConfigError, UnicodeDecodeError) as e:
            return f"kept the last good configuration: {e}"
        self._stamp = stamp
        return f"reloaded {self.path}: {len(self.domains)} domain entries"

    def for_host(self, host: str) -> DomainSettings | None:
        """The first entry whose DomainNames match the host."""
        return next((d for d in self.domains if d.matches(host)), None)
