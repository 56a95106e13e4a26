"""Line-scanning OUTCAR parser: one ``VaspStep`` per ionic step, memory bounded by one step.

Layout relied on (VASP 5.x and 6.x OUTCAR): header lines ``TITEL  = PAW_PBE Fe 06Sep2000`` (one
per POTCAR, in type order), ``ions per type =``, parameter lines (``ENCUT  =``, ``ISPIN  =``,
``NELM   =``, ``GGA     =``, ``METAGGA``, ``LDA+U is selected``, ``PSTRESS=``); then per ionic
step: ``Iteration  N(  M)`` electronic steps, ``magnetization (x)`` table, ``in kB`` stress
(XX YY ZZ XY YZ ZX, compression positive), ``direct lattice vectors``, ``POSITION ...
TOTAL-FORCE`` table, and the ``FREE ENERGIE OF THE ION-ELECTRON SYSTEM`` block whose
``energy  without entropy=  ...  energy(sigma->0) =`` line closes the step. OUTCAR energies do not
have vasprun's VASP 5.x ``e_0_energy`` bug. With ``NWRITE=0`` VASP prints positions and forces only
for some steps; such steps come out with ``positions is None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from omni_data.units import vasp_kbar_to_ase

_ITER = re.compile(rb"Iteration\s+(\d+)\(\s*(\d+)\)")
_FIRST_SCF = re.compile(rb"Iteration\s+\d+\(\s*1\)")
_PARAM = re.compile(
    rb"^\s+(ENCUT|ISPIN|NELM|GGA|METAGGA|PSTRESS|IBRION|ISIF|NSW|NWRITE|IVDW|ISMEAR|SIGMA)\s*=\s*([^\s;]+)"
)
_SYMBOL = re.compile(r"[A-Z][a-z]?")
MAX_ATOMS = 1_000_000  # 'ions per type' adding up to more is a damaged header, not a structure


@dataclass
class VaspStep:
    """One ionic step in Omni units (forces eV/Å, stress eV/Å³ ASE sign); None where not printed."""

    index: int
    positions: np.ndarray | None = None
    cell: np.ndarray | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    magmoms: np.ndarray | None = None
    free_energy: float | None = None
    energy_wo_entrp: float | None = None
    energy_sigma0: float | None = None
    n_electronic: int = 0
    complete: bool = False
    line: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # why the step could not be parsed (damaged lines): it is rejected


@dataclass
class VaspHeader:
    """Run-level facts: version, element per atom, INCAR essentials."""

    version: str = ""
    symbols: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    fixed: list[bool] = field(default_factory=list)  # selective dynamics F F F (vasprun only)
    partially_fixed: bool = False  # some atom fixed along only some axes (not a whole-atom mask)


_NOT_NUMERIC = re.compile(rb"[^0-9.eE+\- \t\r\n]")
_NUMBER = re.compile(rb"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _floats(line: bytes, start: int = 0, count: int | None = None) -> list[float]:
    """Numbers of a line, also where Fortran fixed-width fields run together ('0.000-10.371')."""
    tokens = _NUMBER.findall(line)[start:]
    if b"*" in line:
        raise ValueError(f"overflow field in {line.strip()[:60]!r}")
    return [float(t) for t in (tokens if count is None else tokens[:count])]


def _num(token: bytes) -> float | None:
    """A float, or None for VASP's overflow stars ('**********'): missing, never a made-up value."""
    try:
        return float(token)
    except ValueError:
        return None


def _value(raw: bytes) -> Any:
    text = raw.decode("ascii", "replace")
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"T": True, "F": False}.get(text, text)


def _symbols(titels: list[str], counts: list[int]) -> list[str]:
    if counts and len(titels) > len(counts) and len(titels) % len(counts) == 0:
        titels = titels[: len(counts)]
    if not titels or not counts:
        raise ValueError("no POTCAR titles or 'ions per type' before the first ionic step: not a VASP OUTCAR")
    if len(titels) != len(counts):
        raise ValueError(f"{len(titels)} POTCAR TITEL lines but {len(counts)} entries in 'ions per type'")
    if min(counts) < 0 or sum(counts) > MAX_ATOMS:
        raise ValueError(f"implausible 'ions per type' {counts[:8]} (negative, or over {MAX_ATOMS} atoms)")
    out: list[str] = []
    for titel, n in zip(titels, counts):
        m = _SYMBOL.match(titel)
        if m is None:
            raise ValueError(f"cannot read an element from POTCAR title {titel!r}")
        out += [m.group(0)] * n
    return out


class _HeaderLines:
    """Collects the run-level facts from the lines before the first ionic step."""

    def __init__(self, header: VaspHeader) -> None:
        self.header = header
        self.titels: list[str] = []
        self.potcars: list[str] = []  # fallback when TITEL lines are absent (custodian lobster OUTCAR)
        self.counts: list[int] = []

    def feed(self, line: bytes, line_no: int) -> None:
        params = self.header.params
        if line_no == 1 and b"vasp." in line:
            self.header.version = line.split()[0].decode("ascii", "replace").removeprefix("vasp.")
        if b"TITEL  =" in line:
            self.titels.append(line.split(b"=", 1)[1].split()[1].decode("ascii", "replace"))
        elif line.startswith(b" POTCAR:"):
            self.potcars.append(line.split()[2].decode("ascii", "replace"))
        elif b"ions per type" in line:
            self.counts = [int(t) for t in line.split(b"=", 1)[1].split()]
        elif b"LDA+U is selected" in line:
            params["LDAU"] = True
        elif b"LDAUU =" in line:
            params["LDAUU"] = _floats(line.split(b"=", 1)[1])
        else:
            m = _PARAM.match(line)
            if m:
                key, val = m.group(1).decode(), _value(m.group(2))
                # VASP 5 prints "METAGGA= F" (the old non-selfconsistent switch) after "METAGGA = SCAN"
                if not (key == "METAGGA" and val in (False, "--") and key in params):
                    params[key] = val

    def finish(self) -> None:
        self.header.params.setdefault("LDAU", False)
        self.header.symbols = _symbols(self.titels or self.potcars[: len(self.counts)], self.counts)


def iter_outcar(fh: IO[bytes], resume: tuple[VaspHeader, int] | None = None) -> Iterator[VaspHeader | VaspStep]:
    """Yield the header (once, before the first step), then each ionic step in order; a step cut off
    by the end of the file is yielded with ``complete=False``.

    ``resume=(header, k)``: ``fh`` is positioned at the first ``Iteration`` line of step ``k`` (a
    byte offset from ``step_offsets``); the known header is not yielded again."""
    header = resume[0] if resume else VaspHeader()
    head = _HeaderLines(header)
    header_done = resume is not None
    step = VaspStep(index=resume[1] if resume else 0)
    started = toten_seen = False
    ionic = b""  # the ionic counter N of the step's 'Iteration N(M)' lines
    lines = iter(fh)
    line_no = 0
    for line in lines:
        line_no += 1
        if not header_done:
            try:
                head.feed(line, line_no)
            except (ValueError, IndexError) as exc:
                raise ValueError(f"damaged OUTCAR header at line {line_no} ({exc})") from None
        m = _ITER.search(line) if b"Iteration" in line else None
        if m:
            if not header_done:
                head.finish()
                header_done = True
                yield header
            if started and ionic != m.group(1):  # a new ionic step began before this one closed
                step.error = step.error or f"line {step.line}: ionic step has no closing energy line"
                yield step
                step = VaspStep(index=step.index + 1, cell=step.cell)
                toten_seen = False
            started, ionic = True, m.group(1)
            step.n_electronic = max(step.n_electronic, int(m.group(2)))
            step.line = step.line or line_no
            continue
        if b"direct lattice vectors" in line:
            try:
                step.cell = np.array([_floats(next(lines), 0, 3) for _ in range(3)], dtype=np.float64).reshape(3, 3)
            except StopIteration:
                break
            except ValueError as exc:  # damaged cell: this step fails, the next one reads its own
                step.cell, step.error = None, step.error or f"line {line_no}: lattice vectors ({exc})"
            line_no += 3
            continue
        if not started:
            continue
        try:
            done = _step_line(line, lines, line_no, step, toten_seen)
        except EOFError:
            break
        except (ValueError, IndexError) as exc:  # a damaged line fails its step, not the file
            step.error = step.error or f"line {line_no}: {exc}"
            continue
        line_no, toten_seen = done
        if step.complete:
            yield step
            step = VaspStep(index=step.index + 1, cell=step.cell)
            started = toten_seen = False
    if not header_done:
        head.finish()
        yield header
    if started:
        yield step


def _step_line(line: bytes, lines: Iterator[bytes], line_no: int, step: VaspStep, toten_seen: bool) -> tuple[int, bool]:
    """Apply one line of an ionic step (reading the table it opens) to ``step``; returns the line
    number and whether TOTEN was seen. EOFError when the file ends inside a table; ValueError or
    IndexError when the line or table is damaged."""
    if line.startswith(b"  in kB"):
        try:
            kb = _floats(line, 0, 6)
            step.stress = vasp_kbar_to_ase(np.array(kb)[[0, 1, 2, 4, 5, 3]])
        except ValueError:
            step.stress = None
            step.notes.append("stress overflow (*****) in OUTCAR")
    elif b"magnetization (x)" in line:
        rows, line_no = _table(lines, line_no, skip=3, stop=b"---")
        vals = [_num(r.split()[-1]) if r.split() else None for r in rows]
        step.magmoms = np.array(vals, dtype=np.float64) if rows and None not in vals else None
    elif b"TOTAL-FORCE" in line and b"POSITION" in line:
        first = line_no + 2
        rows, line_no = _table(lines, line_no, skip=1, stop=b"---")
        bad = next((k for k, r in enumerate(rows) if _NOT_NUMERIC.search(r)), None)
        if bad is not None:
            raise ValueError(
                f"non-numeric text in the position/force table at line {first + bad}: "
                f"{rows[bad].strip()[:100].decode('ascii', 'replace')!r}"
            )
        table = np.array([_floats(r, 0, 6) for r in rows], dtype=np.float64).reshape(len(rows), 6)
        step.positions, step.forces = table[:, :3], table[:, 3:6]
    elif line.startswith(b"  free  energy   TOTEN"):
        step.free_energy = _num(line.split(b"=")[1].split()[0])
        toten_seen = True
    elif line.startswith(b"  energy  without entropy=") and toten_seen:
        parts = line.split(b"=")
        step.energy_wo_entrp = _num(parts[1].split()[0])
        step.energy_sigma0 = _num(parts[2].split()[0])
        step.complete = True
    return line_no, toten_seen


def step_offsets(fh: IO[bytes]) -> tuple[list[int], bool]:
    """Byte offsets of each ionic step's first ``Iteration N(   1)`` line, by a cheap line scan,
    and whether the file looks like an OUTCAR at all (has POTCAR lines)."""
    offsets: list[int] = []
    offset = 0
    potcar = False
    for line in fh:
        if b"Iteration" in line and _FIRST_SCF.search(line):
            offsets.append(offset)
        elif not potcar and (b"POTCAR:" in line or b"TITEL  =" in line):
            potcar = True
        offset += len(line)
    return offsets, potcar


def _table(lines: Iterator[bytes], line_no: int, skip: int, stop: bytes) -> tuple[list[bytes], int]:
    """Rows after ``skip`` header lines up to the line starting with ``stop`` (end of file: ValueError)."""
    for _ in range(skip):
        if next(lines, None) is None:
            raise EOFError("file ends inside a table")
        line_no += 1
    rows = []
    for row in lines:
        line_no += 1
        if row.strip().startswith(stop):
            return rows, line_no
        rows.append(row)
    raise EOFError("file ends inside a table")
