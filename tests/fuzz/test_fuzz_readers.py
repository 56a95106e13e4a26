"""Mutation fuzzing of every registered reader over real sample files, in a child process.

For each reader one small real sample (``shared/data``; for formats with no public sample, the
file its own reader test builds) is mutated by a seeded loop: byte flips, truncation, duplicated
and deleted byte ranges, inserted garbage lines, huge or odd numbers in place of numbers (text
formats) or in place of 4/8-byte fields (binary formats). Each mutant is read exactly as
``omni-data ingest`` reads a source (``find_sources`` -> ``partitions`` -> ``pipeline.partition._run``:
``read`` -> ``Triage`` -> shard files -> ``reconcile``) in a worker process that has a memory cap.

A mutant passes when the worker survives (no signal, no hang past ``OMNI_FUZZ_CASE_TIMEOUT``
seconds) and the only exception is a ``ReaderError`` naming the file; anything else (KeyError,
IndexError, UnicodeDecodeError, struct.error, OverflowError, MemoryError, a reconcile failure, an
item that is neither ``Record`` nor ``Rejected``) is a bug reported with its reader and seed.

Each reader fuzzes for ``OMNI_FUZZ_SECONDS`` (default 2.5 s, at least ``MIN_CASES`` mutants);
seed 0 is the unmutated sample and must give records. Replay one mutant with
``python tests/fuzz/test_fuzz_readers.py CASE SEED SAMPLE OUT`` (writes the mutated file).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve()
TESTS = HERE.parents[1]
SECONDS = float(os.environ.get("OMNI_FUZZ_SECONDS", "2.5"))
CASE_TIMEOUT = float(os.environ.get("OMNI_FUZZ_CASE_TIMEOUT", "60"))
MIN_CASES = 8
MEMORY_CAP = 3 << 30  # bytes of address space for the worker: an allocation bomb is a MemoryError


# ----------------------------------------------------------------------------------- mutations
ODD_NUMBERS = (
    b"99999999999999999999999999",
    b"9223372036854775808",
    b"18446744073709551616",
    b"4294967296",
    b"-1",
    b"0",
    b"-9223372036854775809",
    b"1e308",
    b"-1e400",
    b"nan",
    b"inf",
    b"1e-320",
)
GARBAGE_LINES = (
    b"",
    b"}",
    b'{"a": [',
    b"]]]]",
    b"1 2 3 4 5 6 7 8 9",
    b"</calculation>",
    b"<calculation>",
    b"Iteration  1(   1)",
    b"\xff\xfe\x00\x80 not utf-8 \xc3\x28",
    b"nan nan nan",
    b"-",
    b"99999999999999999999999",
    b"=" * 200,
    b"\x00" * 16,
    b"random,frame,1.0,extra",
)


def mutate(data: bytes, case: str, seed: int, text: bool) -> bytes:
    """The mutant ``seed`` of ``data`` for fuzz case ``case`` (deterministic; seed 0 = unchanged)."""
    if seed == 0:
        return data
    rng = random.Random(f"{case}:{seed}")
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        ops: list[Callable[[random.Random, bytearray], bytearray]] = [
            _flip,
            _truncate,
            _duplicate,
            _delete,
            _garbage_line,
        ]
        ops += [_odd_number] * 3 if text else [_odd_field] * 2
        buf = rng.choice(ops)(rng, buf)
    return bytes(buf)


def _span(rng: random.Random, buf: bytearray) -> tuple[int, int]:
    a = rng.randrange(len(buf) + 1)
    return a, min(len(buf), a + rng.choice((1, 8, 64, 512, 4096)))


def _flip(rng: random.Random, buf: bytearray) -> bytearray:
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        if buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.randrange(256) if rng.random() < 0.5 else buf[i] ^ (1 << rng.randrange(8))
    return buf


def _truncate(rng: random.Random, buf: bytearray) -> bytearray:
    return buf[: rng.randrange(len(buf) + 1)]


def _duplicate(rng: random.Random, buf: bytearray) -> bytearray:
    a, b = _span(rng, buf)
    return buf[:b] + buf[a:b] + buf[b:]


def _delete(rng: random.Random, buf: bytearray) -> bytearray:
    a, b = _span(rng, buf)
    return buf[:a] + buf[b:]


def _garbage_line(rng: random.Random, buf: bytearray) -> bytearray:
    starts = [m.end() for m in re.finditer(rb"\n", buf)] or [0]
    at = rng.choice(starts)
    line = (
        rng.choice(GARBAGE_LINES)
        if rng.random() < 0.7
        else bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
    )
    return buf[:at] + line + b"\n" + buf[at:]


def _odd_number(rng: random.Random, buf: bytearray) -> bytearray:
    runs = [m.span() for m in re.finditer(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", buf)]
    if not runs:
        return _flip(rng, buf)
    a, b = rng.choice(runs)
    return buf[:a] + rng.choice(ODD_NUMBERS) + buf[b:]


def _odd_field(rng: random.Random, buf: bytearray) -> bytearray:
    width = rng.choice((4, 8))
    if len(buf) < width:
        return _flip(rng, buf)
    at = rng.randrange(len(buf) - width + 1) & ~(width - 1)
    value = rng.choice((b"\xff", b"\x7f", b"\x00", b"\x80"))
    buf[at : at + width] = (value * width) if value != b"\x7f" else b"\xff" * (width - 1) + b"\x7f"
    return buf


# ----------------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class FuzzCase:
    """One reader fuzzed on one sample (``build_sample``): ``text`` picks the text mutations,
    ``target`` the partition size (several partitions per sample), ``options`` the reader options."""

    name: str
    reader: str
    text: bool
    target: int
    options: dict[str, Any] = field(default_factory=dict)
    read_options: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file given to ingest when it is a companion, not the mutated file


# Bugs found by this fuzzer in files fixed elsewhere (issue 17), keyed by where the exception left
# omni_data. A case whose only bugs are these is reported as xfail naming them; any other bug, a
# signal or a hang fails. Remove an entry once its fix lands (the case then must pass).
KNOWN_AT: dict[tuple[str, str], str] = {}  # (file the exception left from, exception type): reason; none known

CASES = [
    FuzzCase("extxyz", "extxyz", True, 1),
    FuzzCase("extxyz_oc20_txt", "extxyz", True, 1, {"sidecar_txt": True}, source="0.extxyz"),
    FuzzCase("asedb", "asedb", False, 7),
    FuzzCase("aselmdb", "aselmdb", False, 4),
    FuzzCase("vasp_outcar", "vasp", True, 2, {"keep_unconverged": True}),  # its steps hit NELM
    FuzzCase("vasp_vasprun", "vasp", True, 2),
    FuzzCase("mptrj_json", "mptrj_json", True, 6),
    FuzzCase("matpes_json", "matpes_json", True, 4),
    FuzzCase("matpes_jsonl", "matpes_json", True, 4),
    FuzzCase("pyg_lmdb", "pyg_lmdb", False, 40),
    FuzzCase("spice_hdf5", "spice_hdf5", False, 2),
    FuzzCase("ani_hdf5", "ani_hdf5", False, 2),
    FuzzCase("qcml", "qcml", False, 3),
    FuzzCase("qcml_no_crc", "qcml", False, 3, {"verify_crc": False}),  # mutants reach the protobuf parser
]
SHARED_SAMPLES = {
    "extxyz": "extxyz/sevennet_hfo2.extxyz",
    "asedb": "asedb/schnetpack_test_qm9.db",
    "aselmdb": "aselmdb/chemreporter_omol25_rgd_samples.aselmdb",
    "vasp_outcar": "vasp/dpdata_ch4_md_unconverged.OUTCAR",
    "vasp_vasprun": "vasp/dpdata_h2o_md.vasprun.xml",
    "pyg_lmdb": "lmdb/matsciml_alexandria_devset_98.lmdb",
    "spice_hdf5": "hdf5/modelforge_SPICE-1.1.4_n2.hdf5",
    "ani_hdf5": "hdf5/modelforge_ani1x_n5.hdf5",
}


def _test_module(rel: str) -> Any:
    """A reader test module by path (tests are not a package), for the fixtures it builds."""
    path = TESTS / rel
    spec = importlib.util.spec_from_file_location(f"_fuzz_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def build_sample(case: FuzzCase, shared: Path, folder: Path) -> tuple[Path, dict[str, bytes]]:
    """(the file to mutate, files written unchanged beside each mutant) for ``case``."""
    folder.mkdir(parents=True, exist_ok=True)
    if case.name in SHARED_SAMPLES:
        return shared / SHARED_SAMPLES[case.name], {}
    if case.name == "extxyz_oc20_txt":  # mutate the OC20 S2EF side file; the frames stay intact
        xyz = (shared / SHARED_SAMPLES["extxyz"]).read_bytes()
        path = folder / "0.txt"
        path.write_text("random1331004,frame47,-0.5361\nrandom77,frame0,12.25\n")
        return path, {"0.extxyz": xyz}
    if case.name == "mptrj_json":
        path = folder / "MPtrj_2022.9_sample.json"
        _test_module("readers/test_mptrj_json.py")._fixture(path, None)
        return path, {}
    if case.name in ("matpes_json", "matpes_jsonl"):
        entries = _test_module("readers/test_matpes_json.py")._entries(6)
        if case.name == "matpes_json":
            path = folder / "sample_matpes.json"
            path.write_text(json.dumps(entries, indent=1))
        else:
            path = folder / "MatPES-PBE-2025.1.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in entries))
        return path, {}
    if case.name in ("qcml", "qcml_no_crc"):
        qc = _test_module("readers/test_qcml.py")
        path = folder / "qcml-dft_force_field-train.tfrecord"
        qc._write(path, qc._molecules(7))
        return path, {}
    raise AssertionError(f"no sample for fuzz case {case.name}")


# ----------------------------------------------------------------------------------- the worker
def read_like_ingest(case: FuzzCase, path: Path, store: Path) -> Counter:
    """Read ``path`` as ``omni-data ingest`` does; a Counter of outcomes. Raises on anything but
    ReaderError (which must name the file) -- the caller reports that as a bug."""
    from omni_data.pipeline.ingest import IngestSpec, partition_hash, shard_name
    from omni_data.pipeline.partition import Job, PartitionResult, _run
    from omni_data.readers import ReaderError, ReadOptions, find_sources, get_reader, sniff
    from omni_data.schema import Record, Rejected

    opts = ReadOptions(
        dataset="fuzz", task="fuzz", options={**case.options, "root": str(path.parent)}, **case.read_options
    )
    spec = IngestSpec(store=store, reader=case.reader, source=path, options=opts)
    outcome: Counter = Counter()
    try:
        sniff(path)
    except ValueError:
        pass
    reader = get_reader(case.reader)
    real_read = reader.read

    def checked(part: Any, options: Any) -> Iterator[Any]:
        for item in real_read(part, options):
            if isinstance(item, Rejected):
                assert isinstance(item.reason, str) and ":" in item.reason, f"Rejected without a kind: {item!r}"
                assert item.source_file, f"Rejected without its file: {item!r}"
                outcome["rejected"] += 1
            elif isinstance(item, Record):
                outcome["record_items"] += 1
            else:
                raise AssertionError(f"reader yielded {type(item).__name__}, not Record or Rejected")
            yield item

    try:
        for source in find_sources(path, case.reader):
            for part in reader.partitions(source, case.target):
                outcome["partitions"] += 1
                h = partition_hash(spec, part)
                result = PartitionResult(shard="", partition=part.key)
                reader.read = checked  # type: ignore[assignment]
                try:
                    _run(
                        str(store),
                        case.reader,
                        Job(part, shard_name("fuzz", part, h), h),
                        opts,
                        None,
                        ("arrow",),
                        result,
                    )
                finally:
                    reader.read = real_read  # type: ignore[assignment]
                assert result.read == result.written + sum(result.quarantined.values())
                outcome["written"] += result.written
    except ReaderError as exc:
        names = {p.name for p in path.parent.iterdir()}  # the source, or the side file that broke it
        if not any(name in str(exc) for name in names):
            raise AssertionError(f"ReaderError names no file of {sorted(names)}: {exc}") from exc
        outcome["reader_error"] += 1
    return outcome


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def worker() -> None:
    """Serve fuzz requests (one JSON line each) from stdin; report each mutant on stdout."""
    _limit_memory()
    out = os.fdopen(os.dup(1), "w")  # the report channel; anything a reader prints goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        req = json.loads(line)
        case = FuzzCase(**req["case"])
        sample = Path(req["sample"])
        data = sample.read_bytes()
        work = Path(req["work"])
        deadline = time.monotonic() + req["seconds"]
        seed = 0
        while seed < req["min_cases"] or time.monotonic() < deadline:
            folder = work / f"m{seed % 2}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for name, blob in req["companions"].items():
                (folder / name).write_bytes(bytes.fromhex(blob))
            path = folder / sample.name
            path.write_bytes(mutate(data, case.name, seed, case.text))
            out.write(json.dumps({"start": seed}) + "\n")
            out.flush()
            try:
                got = read_like_ingest(case, folder / case.source if case.source else path, folder / "store")
                out.write(json.dumps({"done": seed, "outcome": dict(got)}) + "\n")
            except BaseException as exc:  # noqa: BLE001 - every escape is what we look for
                tb = traceback.extract_tb(exc.__traceback__)
                where = next(
                    (f"{f.filename}:{f.lineno}" for f in reversed(tb) if "/omni_data/" in f.filename),
                    f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?",
                )
                out.write(
                    json.dumps(
                        {
                            "bug": seed,
                            "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                            "where": where,
                            "trace": traceback.format_exc()[-3000:],
                        }
                    )
                    + "\n"
                )
            out.flush()
            seed += 1
        out.write(json.dumps({"end": seed}) + "\n")
        out.flush()


class Worker:
    """A reusable child process running ``worker()``; restarted after it dies."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: warnings never block the worker

    def ensure(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE), "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=env,
                cwd=str(TESTS.parent),
            )
        return self.proc

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-2000:].decode(errors="replace")

    def fuzz(
        self, case: FuzzCase, sample: Path, companions: dict[str, bytes], work: Path
    ) -> tuple[list[dict], Counter, int]:
        """Run one case: (bugs, summed outcomes, mutants tried). Fails the test on a signal or hang."""
        proc = self.ensure()
        assert proc.stdin is not None and proc.stdout is not None
        req = {
            "case": case.__dict__,
            "sample": str(sample),
            "work": str(work),
            "seconds": SECONDS,
            "min_cases": MIN_CASES,
            "companions": {k: v.hex() for k, v in companions.items()},
        }
        proc.stdin.write((json.dumps(req) + "\n").encode())
        proc.stdin.flush()
        bugs: list[dict] = []
        totals: Counter = Counter()
        started = -1
        buf = b""
        while True:
            while b"\n" not in buf:  # os.read, not a buffered readline: select sees every byte
                ready, _, _ = select.select([proc.stdout], [], [], CASE_TIMEOUT)
                if not ready:
                    self.close()
                    pytest.fail(
                        f"{case.name}: mutant seed {started} hangs (> {CASE_TIMEOUT:.0f} s); "
                        f"replay: python {HERE.relative_to(TESTS.parent)} {case.name} {started} {sample} OUT"
                    )
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                buf += chunk
            line, _, buf = buf.partition(b"\n")
            if not line:
                code = proc.wait()
                err = self.stderr_tail()
                self.proc = None
                pytest.fail(
                    f"{case.name}: worker died (exit {code}, signal {-code if code < 0 else None}) on mutant "
                    f"seed {started}; replay: python {HERE.relative_to(TESTS.parent)} {case.name} {started} "
                    f"{sample} OUT\n{err}"
                )
            msg = json.loads(line)
            if "start" in msg:
                started = msg["start"]
            elif "done" in msg:
                totals.update(msg["outcome"])
                if msg["done"] == 0:
                    assert msg["outcome"].get("written", 0) > 0 and not msg["outcome"].get("reader_error"), (
                        f"{case.name}: the unmutated sample gives no records: {msg['outcome']}"
                    )
            elif "bug" in msg:
                bugs.append(msg)
            elif "end" in msg:
                return bugs, totals, msg["end"]


@pytest.fixture(scope="module")
def fuzz_worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def _known(bug: dict) -> str | None:
    return next(
        (
            reason
            for (where, error), reason in KNOWN_AT.items()
            if where in bug["where"] and bug["error"].startswith(error)
        ),
        None,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reader_survives_mutants(case: FuzzCase, shared_data: Path, fuzz_worker: Worker, tmp_path: Path) -> None:
    sample, companions = build_sample(case, shared_data, tmp_path / "sample")
    bugs, totals, tried = fuzz_worker.fuzz(case, sample, companions, tmp_path / "work")
    assert tried >= MIN_CASES
    assert totals["written"] > 0 and totals["partitions"] > 0
    new = [b for b in bugs if _known(b) is None]
    report = "\n".join(f"seed {b['bug']}: {b['error']} at {b['where']}" for b in (new or bugs)[:20])
    assert not new, (
        f"{case.name}: {len(new)} of {tried} mutants broke the reader:\n{report}\n\nfirst:\n{new[0]['trace']}"
    )
    if bugs:
        pytest.xfail(f"{case.name}: only known bugs fixed elsewhere: {sorted({_known(b) for b in bugs})}\n{report}")


def test_registered_readers_are_all_fuzzed() -> None:
    from omni_data.readers import READERS

    assert set(READERS) <= {c.reader for c in CASES}, "add a FuzzCase for the new reader"


def test_mutations_are_deterministic_and_change_the_bytes() -> None:
    data = b'3\nLattice="5 0 0 0 5 0 0 0 5" energy=-1.5\nH 0 0 0\nH 0 0 1\nH 0 1 0\n'
    assert mutate(data, "x", 0, True) == data
    mutants = [mutate(data, "x", s, True) for s in range(1, 40)]
    assert mutants == [mutate(data, "x", s, True) for s in range(1, 40)]
    assert sum(m != data for m in mutants) >= 35


def _replay(argv: list[str]) -> None:
    name, seed, sample, out = argv
    case = next(c for c in CASES if c.name == name)
    Path(out).write_bytes(mutate(Path(sample).read_bytes(), case.name, int(seed), case.text))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.path.insert(0, str(TESTS.parent))
        worker()
    else:
        _replay(sys.argv[1:])
