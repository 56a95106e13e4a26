"""The demo's stage ledger: which stages finished, and on which inputs (issue 22, item 4).

``ledger.json`` in the demo folder holds one entry per stage: the fingerprint of its inputs (its
options and the output tokens of the stages it reads from), its state (``running`` while it
runs, ``done`` when it finished, ``failed``) and, when done, its outputs and an output token: a
new random token every time the stage runs, so that whatever read its earlier output runs again. It is rewritten atomically
(temporary file, fsync, ``os.replace``) when a stage starts and when it ends, so a killed demo
leaves the ledger as it was before or after one of those writes, never half written.

A re-run of the demo reuses a stage whose entry is ``done`` with the same fingerprint and whose
output paths still exist; any other stage runs again, and so does every stage that reads from
it (their fingerprints contain its new token).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LedgerEntry", "new_token", "fingerprint", "StageLedger"]

LEDGER_VERSION = 1
"""Bump when the demo's stages change what they write: every stage of an older ledger re-runs."""

STATES = ("running", "done", "failed")


@dataclass
class LedgerEntry:
    """One stage's last attempt: its input fingerprint, state and (when done) outputs, seconds and
    output token."""

    fingerprint: str
    state: str
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    token: str = ""


def new_token() -> str:
    """A fresh output token (a stage ran and wrote new outputs)."""
    return uuid.uuid4().hex[:16]


def fingerprint(stage: str, options: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """A short hash of a stage's name, options and the output tokens of the stages it reads from."""
    payload = {"version": LEDGER_VERSION, "stage": stage, "options": dict(options), "inputs": dict(inputs)}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StageLedger:
    """``ledger.json``: read once at start, rewritten atomically after every change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, LedgerEntry] = self._load() if self.path.exists() else {}

    def _load(self) -> dict[str, LedgerEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: unreadable demo ledger ({exc}); start over with --fresh") from exc
        if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION:
            return {}  # another version of the demo wrote it: nothing is reused
        entries = {}
        for name, raw in (data.get("stages") or {}).items():
            if (
                not isinstance(raw, dict)
                or raw.get("state") not in STATES
                or not isinstance(raw.get("fingerprint"), str)
            ):
                raise ValueError(f"{self.path}: stage {name!r}: malformed ledger entry; start over with --fresh")
            entries[name] = LedgerEntry(
                raw["fingerprint"],
                raw["state"],
                dict(raw.get("outputs") or {}),
                float(raw.get("seconds") or 0.0),
                str(raw.get("token") or ""),
            )
        return entries

    def get(self, stage: str) -> LedgerEntry | None:
        return self.entries.get(stage)

    def is_done(self, stage: str, fp: str) -> bool:
        """The stage finished on inputs with fingerprint ``fp``."""
        entry = self.entries.get(stage)
        return entry is not None and entry.state == "done" and entry.fingerprint == fp

    def interrupted(self, stage: str, fp: str) -> bool:
        """The stage's last attempt, on the same inputs, did not finish (killed or failed)."""
        entry = self.entries.get(stage)
        return entry is not None and entry.state != "done" and entry.fingerprint == fp

    def mark(
        self,
        stage: str,
        fp: str,
        state: str,
        outputs: Mapping[str, Any] | None = None,
        seconds: float = 0.0,
        token: str = "",
    ) -> None:
        """Record the stage's state and write the ledger atomically."""
        if state not in STATES:
            raise ValueError(f"ledger state must be one of {STATES}, got {state!r}")
        self.entries[stage] = LedgerEntry(fp, state, dict(outputs or {}), round(float(seconds), 1), token)
        self._save()

    def _save(self) -> None:
        data = {"version": LEDGER_VERSION, "stages": {k: asdict(v) for k, v in self.entries.items()}}
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
