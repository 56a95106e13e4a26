"""Elapsed times and ETAs in progress lines: ``1h02m03s`` / ``4m05s`` / ``6s``.

One formatter for every progress line (``omni_data.recompute.progress``; ``omni_data.select.progress``
keeps a private copy until it imports this one). Standard library only, so any module may use it.
"""

from __future__ import annotations

__all__ = ["format_clock"]


def format_clock(seconds: float) -> str:
    """``seconds`` rounded to whole seconds as ``1h02m03s``, ``4m05s`` or ``6s`` (never negative)."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"
