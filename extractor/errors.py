"""The one error hierarchy of the core.

Every failure the core can meet is an `ExtractError`; the addon turns any of them into an unclean end
of the response, so the messages are written for the person reading the proxy log: they name the
structure, the byte offset and the numbers involved.
"""


class ExtractError(Exception):
    """Base of every error the extraction core raises on bad or unsupported input."""


class MalformedInput(ExtractError):
    """The bytes break the container's rules (bad magic, sizes that overrun, reserved bits set)."""


class TruncatedInput(MalformedInput):
    """The input ended inside a structure: the origin sent a short body."""


class UnsupportedInput(ExtractError):
    """Well-formed, but a format or layout this product does not extract."""


class LimitExceeded(ExtractError):
    """Metadata larger than the configured bound (audio_only_max_header)."""


class SpoolFailed(ExtractError):
    """The spool could not keep the media data that waits for a moov (a full or failing disk)."""


def human_size(n: int) -> str:
    """Byte counts in error messages: exact when small, rounded with a unit when large."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class NoAudio(UnsupportedInput):
    """The whole input held no audio: there is nothing to extract and no video may be sent."""


class SeekPastEnd(UnsupportedInput):
    """The seek start lies past the end of the audio (the CDN answers 400)."""
