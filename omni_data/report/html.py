"""``report.html``: one self-contained page (inline CSS, no scripts) with PNGs beside it."""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any, Sequence

from omni_data.report import plots
from omni_data.report.collect import StoreSummary, summarize_stores

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}h2{border-bottom:1px solid #ddd}"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "task"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i < left else ""
        if isinstance(v, float):
            v = f"{v:.4g}"
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    return f'<img src="{html.escape(path.name)}" alt="{html.escape(alt)}">'


def render(summary: StoreSummary, out: Path) -> Path:
    """Draw every figure into ``out`` and write ``out/report.html``; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = summary.tasks
    parts = [f"<h1>Omni data report</h1><p>stores: {html.escape(', '.join(summary.stores))}</p>"]
    rows = [(t, st.frames, st.atoms, int((st.element_frames > 0).sum()), st.force_atoms,
             ", ".join(f"{d} ({n})" for d, n in sorted(st.datasets.items())))
            for t, st in tasks.items()]
    parts.append("<h2>Tasks</h2>" + _table(
        ["task", "frames", "atoms", "elements", "atoms with forces", "datasets"], rows))
    parts.append("<h2>Element coverage</h2>")
    for t, st in tasks.items():
        parts.append(_img(plots.coverage(t, st, out / f"coverage_{_slug(t)}.png"), f"coverage {t}"))
    parts.append("<h2>Distributions</h2>")
    parts.append(_img(plots.energy_per_atom(tasks, out / "energy_per_atom.png"), "energy per atom"))
    if any(st.epa_ref for st in tasks.values()):
        parts.append(_img(plots.energy_per_atom(tasks, out / "energy_per_atom_referenced.png", True),
                          "energy per atom after references"))
    parts.append(_img(plots.force_magnitude(tasks, out / "force_magnitude.png"), "force magnitudes"))
    parts.append(_img(plots.atoms_per_structure(tasks, out / "atoms_per_structure.png"), "sizes"))
    parts.append("<h2>Quarantine</h2>")
    parts.append(_img(plots.quarantine_reasons(summary.quarantine, out / "quarantine.png"), "quarantine"))
    parts.append(_table(["reason", "records"], sorted(summary.quarantine.items(), key=lambda kv: -kv[1]))
                 if summary.quarantine else "<p>nothing quarantined</p>")
    parts.append("<h2>Duplicates</h2>" + _duplicates(summary))
    parts.append("<h2>Reference energies</h2>" + _references(summary))
    parts.append("<h2>Splits</h2>" + _splits(summary))
    if summary.pairs:
        rows = [(f"{p['source_task']} → {p['task']}", p["n_pairs"], p["rms_per_atom_before"],
                 p["rms_per_atom_after"]) for p in summary.pairs]
        parts.append("<h2>Cross-task pairs</h2>" + _table(
            ["source → task", "pairs", "RMS/atom before (eV)", "after shift (eV)"], rows))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Omni data report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    path = out / "report.html"
    tmp = path.with_name(f".report.html.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _duplicates(summary: StoreSummary) -> str:
    if not summary.dedup:
        return "<p>not computed: run <code>omni-data dedup STORE</code></p>"
    out = []
    for d in summary.dedup:
        rows = [(t, n) for t, n in sorted(d.get("within_task", {}).items())]
        out.append(f"<p>{html.escape(d['store'])}: {d['records']} frames, {d['unique']} distinct "
                   f"(tol {d['tol']:g} Å); hashes shared across datasets: {d['across_datasets']}</p>")
        out.append(_table(["task", "duplicate frames"], rows))
        if d.get("examples"):
            out.append("<p>examples: " + "; ".join(html.escape(" = ".join(e)) for e in d["examples"][:5])
                       + "</p>")
    return "".join(out)


def _references(summary: StoreSummary) -> str:
    if not summary.references:
        return "<p>not computed: run <code>omni-data references STORE</code></p>"
    from ase.data import chemical_symbols

    rows = []
    for task, d in sorted(summary.references.items()):
        rows.append((task, d["n_frames"], d["e_per_atom_std_before"], d["e_per_atom_std_after"],
                     d["force_rms"] if d["force_rms"] is not None else "-",
                     " ".join(f"{chemical_symbols[int(z)]}={v:.4f}" for z, v in d["mu"].items()),
                     ",".join(chemical_symbols[z] for z in d["absent"]) or "-"))
    return _table(["task", "frames", "std/atom before", "after", "force RMS", "μ (eV)",
                   "absent (μ=0)"], rows)


def _splits(summary: StoreSummary) -> str:
    if not summary.splits:
        return "<p>not computed: run <code>omni-data split STORE</code></p>"
    rows = []
    for store, d in summary.splits.items():
        keys = ", ".join(f"{k}: {v}" for k, v in sorted(d.get("group_keys", {}).items())) or "id"
        rows.append((store, d["counts"]["train"], d["counts"]["val"], d["counts"]["test"], d["seed"], keys))
    return _table(["store", "train", "val", "test", "seed", "group keys"], rows)


def build_report(stores: Sequence[str], out: str | Path, workers: int = 1, client: Any = None) -> Path:
    """Collect statistics from ``stores`` and write the report into ``out``."""
    return render(summarize_stores(stores, workers, client), Path(out))
