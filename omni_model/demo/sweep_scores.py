"""Scoring the sweep's runs without looking at test rows: validation rows (the held-out truth's
calibration split under the common head; in-domain rows of the structures whose truth is in that
split), the trainer's own validation lines, scores relative to plain, and the choice.

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omni_model.demo.layout import COMMON_TASK, DemoLayout

__all__ = ["validation_rows", "in_domain_split_rows", "valid_csv_rows", "score_against_plain", "choose_by_validation"]

OOD_ROWS = ("metals", "molecules")
"""Source domains scored under the common task's head (cross-domain rows)."""
IN_DOMAIN_BAND = 0.10
"""In-domain validation errors may be at most this much worse than plain (relative)."""


def validation_rows(
    checkpoint: str, truth_store: Path, head: str = COMMON_TASK, split: str = "val"
) -> list[dict[str, Any]]:
    """Cross-domain rows to choose by, none from the test split: the held-out truth's calibration
    split ``split`` under ``head``, per-element offsets fitted on those same records (in-sample:
    the test split is never touched)."""
    import numpy as np

    from omni_data.harmonize.splits import split_of
    from omni_model.data.dataset import open_store
    from omni_model.evaluation.transfer import structure_errors, transfer_row
    from omni_model.train.checkpoint import load_model

    model, _, _ckpt = load_model(checkpoint, use_ema=True)
    store = open_store(str(truth_store))
    idx = np.flatnonzero(np.asarray(split_of(store)) == split)
    err = structure_errors(model, store, [int(i) for i in idx], head, 16, None, checkpoint)
    rows: list[dict[str, Any]] = []
    for group in OOD_ROWS:
        r = err.select(head, group)
        if len(r):
            row = transfer_row(err, r, err, r, model.elements)
            rows.append(
                {
                    "kind": "validation cross-domain",
                    "head": head,
                    "data": group,
                    "n": row["n"],
                    "energy_mae_offset": row["energy_mae_offset"],
                    "forces_mae": row["forces_mae"],
                }
            )
    return rows


def in_domain_split_rows(checkpoint: str, lay: DemoLayout) -> dict[str, list[dict[str, Any]]]:
    """Same-domain rows (each task's held-out structures under its own head) split like the
    held-out truth: ``val`` = structures whose recomputed copy is in the truth's calibration split
    (to choose by), ``test`` = those in its test split (to report). Kind ``validation in-domain``
    and ``same-domain (test split)``; ``data`` is the task."""
    from omni_data.harmonize.splits import split_of
    from omni_data.store import Store
    from omni_model.demo.evaluate import omni_predictor, same_domain_rows

    truth = Store(lay.store("test_truth"))
    labels = split_of(truth)
    where = {str((r.metadata or {}).get("source_id")): str(lab) for r, lab in zip(truth, labels)}
    records = list(Store(lay.store("test")))
    predict = omni_predictor(Path(checkpoint))
    out = {}
    for split, kind in (("val", "validation in-domain"), ("test", "same-domain (test split)")):
        rows = same_domain_rows([r for r in records if where.get(r.id) == split], predict)
        out[split] = [{**r, "kind": kind, "data": r["head"]} for r in rows]
    return out


def valid_csv_rows(path: Path) -> list[dict[str, Any]]:
    """The last validation line per task of a trainer's ``valid.csv`` (energy per atom, forces)."""
    import csv

    last: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            last[r["task"]] = r
    return [
        {
            "kind": "trainer validation",
            "head": t,
            "data": t,
            "n": int(r["n"]),
            "energy_mae": float(r["energy_mae_per_atom"]),
            "forces_mae": float(r["forces_mae"]),
        }
        for t, r in sorted(last.items())
    ]


def _value(rows: Sequence[Mapping[str, Any]], kind: str, data: str, name: str) -> float | None:
    for r in rows:
        if r["kind"] == kind and r["data"] == data and r.get(name) is not None:
            return float(r[name])
    return None


def score_against_plain(rows: Sequence[Mapping[str, Any]], plain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Validation ratios to plain (means over seeds): per OOD row aligned energy and forces, the
    mean of those (``score``, lower is better) and the worst in-domain ratio (``in_domain_worst``,
    energy or forces of any task)."""
    ratios: dict[str, float] = {}
    for data in OOD_ROWS:
        for name in ("energy_mae_offset", "forces_mae"):
            a, b = (
                _value(rows, "validation cross-domain", data, name),
                _value(plain, "validation cross-domain", data, name),
            )
            if a is not None and b:
                ratios[f"{data} {name}"] = a / b
    worst = 0.0
    for r in plain:
        if r["kind"] == "validation in-domain":
            for name in ("energy_mae", "forces_mae"):
                a = _value(rows, "validation in-domain", r["data"], name)
                if a is not None and r.get(name):
                    worst = max(worst, a / float(r[name]))
    score = sum(ratios.values()) / len(ratios) if ratios else float("inf")
    return {"ratios": ratios, "score": score, "in_domain_worst": worst}


def choose_by_validation(
    validation: Mapping[str, Sequence[Mapping[str, Any]]], plain: str = "plain", band: float = IN_DOMAIN_BAND
) -> dict[str, Any]:
    """The recommended variant from validation rows only ({variant: rows averaged over seeds}):
    the lowest ``score`` among variants whose in-domain validation errors stay within ``band`` of
    plain; if none does, the lowest score overall, with ``within_band`` False."""
    if plain not in validation:
        raise ValueError(f"choosing needs the {plain!r} variant's validation rows; have {sorted(validation)}")
    scores = {name: score_against_plain(rows, validation[plain]) for name, rows in validation.items() if name != plain}
    if not scores:
        raise ValueError("choosing needs at least one variant besides plain")
    ok = {n: s for n, s in scores.items() if s["in_domain_worst"] <= 1.0 + band}
    pool = ok or scores
    best = min(pool, key=lambda n: pool[n]["score"])
    return {"chosen": best, "within_band": bool(ok), "scores": scores}
