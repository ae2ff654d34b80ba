"""MP4 / MOV / M4A: boxes, sample tables, the output plan, and the streaming filter."""

from .progressive import Mp4AudioFilter

__all__ = ["Mp4AudioFilter"]
