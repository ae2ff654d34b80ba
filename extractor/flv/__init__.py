"""FLV: the header and tag layout (tags), onMetaData (amf0), and the streaming filter (filter)."""

from .filter import FlvAudioFilter

__all__ = ["FlvAudioFilter"]
