"""MPEG-TS: packets (packets), PAT/PMT sections (psi), which streams stay (streams), the filter (filter)."""

from .filter import TsAudioFilter

__all__ = ["TsAudioFilter"]
