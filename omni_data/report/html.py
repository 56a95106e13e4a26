"""``report.html``: one self-contained page (inline CSS, no scripts) with PNGs beside it."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omni_data.report import plots
from omni_data.report.collect import StoreSummary, summarize_stores

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}h2{border-bottom:1px solid #ddd}
tr.weak td{color:#999;font-style:italic;background:#f7f7f7}p.warn{color:#8a4b00}"""

__all__ = ["build_report", "render"]

_LEFT = ' class="l"'


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
    rows: list[tuple[Any, ...]] = [
        (
            t,
            st.frames,
            st.atoms,
            int((st.element_frames > 0).sum()),
            st.force_atoms,
            ", ".join(f"{d} ({n})" for d, n in sorted(st.datasets.items())),
        )
        for t, st in tasks.items()
    ]
    parts.append(
        "<h2>Tasks</h2>" + _table(["task", "frames", "atoms", "elements", "atoms with forces", "datasets"], rows)
    )
    parts.append("<h2>Element coverage</h2>")
    for t, st in tasks.items():
        parts.append(_img(plots.coverage(t, st, out / f"coverage_{_slug(t)}.png"), f"coverage {t}"))
    parts.append("<h2>Distributions</h2>")
    parts.append(_img(plots.energy_per_atom(tasks, out / "energy_per_atom.png"), "energy per atom"))
    if any(st.epa_ref for st in tasks.values()):
        parts.append(
            _img(
                plots.energy_per_atom(tasks, out / "energy_per_atom_referenced.png", True),
                "energy per atom after references",
            )
        )
    parts.append(_img(plots.force_magnitude(tasks, out / "force_magnitude.png"), "force magnitudes"))
    parts.append(_img(plots.atoms_per_structure(tasks, out / "atoms_per_structure.png"), "sizes"))
    parts.append("<h2>Quarantine</h2>")
    parts.append(_img(plots.quarantine_reasons(summary.quarantine, out / "quarantine.png"), "quarantine"))
    parts.append(
        _table(["reason", "records"], sorted(summary.quarantine.items(), key=lambda kv: -kv[1]))
        if summary.quarantine
        else "<p>nothing quarantined</p>"
    )
    parts.append("<h2>Duplicates</h2>" + _duplicates(summary))
    parts.append("<h2>Reference energies</h2>" + _references(summary))
    parts.append("<h2>Splits</h2>" + _splits(summary))
    if summary.pairs:
        rows = [
            (
                f"{p['source_task']} → {p['task']}",
                p["n_pairs"],
                p["rms_per_atom_before"],
                p["rms_per_atom_after"],
                "underdetermined" if p.get("underdetermined") else "ok",
            )
            for p in summary.pairs
        ]
        parts.append(
            "<h2>Cross-task pairs</h2>"
            + _table(["source → task", "pairs", "RMS/atom before (eV)", "after shift (eV)", "fit"], rows)
        )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Omni data report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
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
        out.append(
            f"<p>{html.escape(d['store'])}: {d['records']} frames, {d['unique']} distinct "
            f"(tol {d['tol']:g} Å); hashes shared across datasets: {d['across_datasets']}</p>"
        )
        out.append(_table(["task", "duplicate frames"], rows))
        if d.get("examples"):
            out.append("<p>examples: " + "; ".join(html.escape(" = ".join(e)) for e in d["examples"][:5]) + "</p>")
    return "".join(out)


def _references(summary: StoreSummary) -> str:
    if not summary.references:
        return "<p>not computed: run <code>omni-data references STORE</code></p>"
    from omni_data.harmonize.references import TaskReferences

    fits = {t: TaskReferences.from_json(d) for t, d in sorted(summary.references.items())}
    rows = [
        (
            t,
            f.n_frames,
            f.e_per_atom_std_before,
            f.e_per_atom_std_after,
            f.force_rms if f.force_rms is not None else "-",
            len(f.mu),
            _fit_word(f),
        )
        for t, f in fits.items()
    ]
    out = [_table(["task", "frames", "std/atom before", "after", "force RMS", "elements", "fit"], rows)]
    for t, f in fits.items():
        out.append(f"<h3>{html.escape(t)}: reference per element</h3>" + _element_table(f))
    return "".join(out)


def _fit_word(fit: Any) -> str:
    """The task's fit in a word or two: ok, or which elements are not separately determined."""
    from ase.data import chemical_symbols

    if not fit.collinear and not fit.underdetermined:
        return "ok"
    names = "; ".join(", ".join(chemical_symbols[z] for z in c) for c in fit.collinear)
    word = "underdetermined" if fit.underdetermined else "ill-conditioned"
    return f"{word}{': ' + names if names else ''} (rank {fit.rank} < {len(fit.mu)})"


def _element_table(fit: Any) -> str:
    """Element, μ, structures and flag; a μ that is not fitted on its own is greyed and explained
    (the same words ``omni-data references`` prints)."""
    from omni_data.harmonize.references import element_rows

    body, notes = [], []
    absent = [r.symbol for r in element_rows(fit) if r.mu is None]
    for r in element_rows(fit):
        if r.mu is None:
            continue
        if r.trusted:
            mu = f"{r.mu:.6f}"
        else:
            mu = f"{r.mu:.6f} ({'not determined' if r.status == 'undetermined' else 'unreliable'})"
        cells = [r.symbol, r.z, mu, "-" if r.structures is None else r.structures, "" if r.trusted else r.status]
        row = "".join(f"<td{_LEFT if i in (0, 4) else ''}>{html.escape(str(v))}</td>" for i, v in enumerate(cells))
        body.append(f'<tr class="weak">{row}</tr>' if not r.trusted else f"<tr>{row}</tr>")
        if r.flag and r.flag not in notes:
            notes.append(r.flag)
    head = "".join(
        f"<th{_LEFT if i in (0, 4) else ''}>{html.escape(h)}</th>"
        for i, h in enumerate(["element", "Z", "μ (eV)", "structures", "flag"])
    )
    warn = "".join(
        f'<p class="warn">{html.escape(n)}. Greyed μ are not elemental energies: do not read them on their own.</p>'
        for n in notes
    )
    if absent:
        names = html.escape(", ".join(absent))
        warn += f"<p>absent from this task (no reference; μ = 0 is used): {names}</p>"
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{warn}"


def _splits(summary: StoreSummary) -> str:
    if not summary.splits:
        return "<p>not computed: run <code>omni-data split STORE</code></p>"
    rows = []
    for store, d in summary.splits.items():
        keys = ", ".join(f"{k}: {v}" for k, v in sorted(d.get("group_keys", {}).items())) or "id"
        rows.append((store, d["counts"]["train"], d["counts"]["val"], d["counts"]["test"], d["seed"], keys))
    warn = "".join(
        f'<p class="warn">{html.escape(store)}: {html.escape(w)}</p>'
        for store, d in summary.splits.items()
        for w in d.get("warnings", [])
    )
    return _table(["store", "train", "val", "test", "seed", "group keys"], rows) + warn


def build_report(stores: Sequence[str], out: str | Path, workers: int = 1, client: Any = None) -> Path:
    """Collect statistics from ``stores`` and write the report into ``out``."""
    return render(summarize_stores(stores, workers, client), Path(out))
