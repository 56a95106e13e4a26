"""OC20 S2EF per-frame metadata: the ``.txt`` (or ``.txt.xz``) beside each ``.extxyz.xz``.

Layout (fairchem OC20 S2EF download, preprocessing ``preprocess_ef.py``): line ``i`` describes
frame ``i`` of the extxyz with the same stem, as ``random<sid>,frame<fid>,<reference_energy>``
(test splits may omit the reference energy). The extxyz energy is the raw DFT total; the
adsorption-style target is ``energy - reference_energy``. This module registers no reader: the
extxyz reader reads the frames and ingest attaches ``frame_metadata(...)[i]`` to record ``i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from omni_data.readers import ReaderError
from omni_data.readers._common import open_binary

__all__ = ["FrameInfo", "txt_for", "parse_line", "frame_metadata"]


@dataclass(frozen=True)
class FrameInfo:
    """One line of an OC20 S2EF ``.txt``: system id, frame id, reference energy (eV) or None."""

    sid: int | str
    fid: int
    reference_energy: float | None

    def metadata(self) -> dict[str, int | str | float]:
        """As JSON-safe record metadata (``sid``, ``fid``, ``reference_energy``)."""
        out: dict[str, int | str | float] = {"sid": self.sid, "fid": self.fid}
        if self.reference_energy is not None:
            out["reference_energy"] = self.reference_energy
        return out


def txt_for(extxyz: str | Path) -> Path | None:
    """The metadata file for ``<stem>.extxyz[.xz]``: ``<stem>.txt`` or ``<stem>.txt.xz``; None if absent."""
    p = Path(extxyz)
    name = p.name
    for suffix in (".extxyz.xz", ".extxyz.gz", ".extxyz", ".xyz.xz", ".xyz"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        stem = p.stem
    for candidate in (p.with_name(stem + ".txt"), p.with_name(stem + ".txt.xz")):
        if candidate.is_file():
            return candidate
    return None


def _prefixed_int(token: str, prefix: str) -> int | str:
    token = token.strip()
    body = token[len(prefix) :] if token.startswith(prefix) else token
    return int(body) if body.isdigit() else token


def parse_line(line: str, where: str) -> FrameInfo:
    """Parse ``random<sid>,frame<fid>[,<reference_energy>]``; ValueError naming ``where``."""
    parts = [t.strip() for t in line.strip().split(",")]
    if len(parts) not in (2, 3) or not parts[1]:
        raise ValueError(f"{where}: expected 'random<sid>,frame<fid>,<reference_energy>', got {line.strip()!r}")
    fid = _prefixed_int(parts[1], "frame")
    if not isinstance(fid, int):
        raise ValueError(f"{where}: frame id {parts[1]!r} is not 'frame<int>'")
    ref = None
    if len(parts) == 3 and parts[2]:
        try:
            ref = float(parts[2])
        except ValueError:
            raise ValueError(f"{where}: reference energy {parts[2]!r} is not a number") from None
        if not math.isfinite(ref):
            raise ValueError(f"{where}: reference energy {parts[2]!r} is not finite")
    return FrameInfo(_prefixed_int(parts[0], "random"), fid, ref)


def frame_metadata(path: str | Path) -> list[FrameInfo]:
    """Every line of an OC20 ``.txt``/``.txt.xz`` in order (entry ``i`` belongs to frame ``i``).

    Raises ``ReaderError`` naming the file and line for an unreadable file or a malformed line.
    """
    out: list[FrameInfo] = []
    with open_binary(path) as fh:
        try:
            for n, raw in enumerate(fh, start=1):
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                out.append(parse_line(line, f"{path} line {n}"))
        except (ValueError, OSError, EOFError) as exc:
            raise ReaderError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from exc
    return out
