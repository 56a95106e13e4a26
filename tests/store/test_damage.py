"""Damage is an error naming the file, never a crash or a wrong record (issue 23, item 3).

Each attack runs in a subprocess (``_attack``) and the test checks its exit status, so a
SIGSEGV or SIGBUS fails the test instead of killing pytest. The subprocess copies a small
store, damages it (random byte flips in every file, or a truncation), then reads everything
through the public API: ``store[i]``, ``get_many``, ``get(id)``, ``iter``, ``table``,
``quarantine``, ``verify_store``. Each read must give the right record (compared with the
undamaged store) or raise an exception whose message names a file of the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from omni_data.store import build_id_index, write_shard
from omni_data.store.testing import bare_record, emt_records

ATTACK = textwrap.dedent("""
    import json, os, random, shutil, sys
    from pathlib import Path
    from omni_data.store import Store, verify_store
    from omni_data.store.testing import record_differences

    good_dir, work, seed, mode, trials = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    good = Store(good_dir)
    truth = [good[i] for i in range(len(good))]
    columns = good.table().to_pylist()
    rng = random.Random(seed)
    stats = {"right": 0, "errors": 0, "wrong": [], "unnamed": []}

    def named(exc, root):
        text = str(exc)
        return str(root) in text or any(p.name in text for p in root.rglob("*") if p.is_file())

    def check(root, what, fn, expect=None):
        try:
            got = fn()
        except Exception as exc:  # an error is fine when it names a file of the store
            stats["errors"] += 1
            if not named(exc, root) and not isinstance(exc, KeyError):
                stats["unnamed"].append(f"{what}: {type(exc).__name__}: {exc}")
            return
        if expect is not None and not expect(got):
            stats["wrong"].append(what)
        else:
            stats["right"] += 1

    for trial in range(trials):
        root = work / f"t{trial}"
        shutil.copytree(good_dir, root)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".catalog.lock")
        if mode == "flip-data":  # every file but catalog.json (whose checksum line refuses it whole)
            files = [p for p in files if p.name != "catalog.json"]
        for path in files if mode.startswith("flip") else [rng.choice([p for p in files if p.suffix == ".lmdb"])]:
            data = bytearray(path.read_bytes())
            if mode.startswith("flip"):
                for _ in range(rng.randint(1, 4)):
                    at = rng.randrange(len(data))
                    data[at] ^= 1 << rng.randrange(8)
            else:  # truncate by one page or a few bytes
                data = data[: len(data) - rng.choice([1, 7, 4096])]
            path.write_bytes(bytes(data))
        try:
            store = Store(root)
        except Exception as exc:
            stats["errors"] += 1
            if not named(exc, root):
                stats["unnamed"].append(f"open: {type(exc).__name__}: {exc}")
            shutil.rmtree(root)
            continue
        n = len(truth)
        same = lambda k: (lambda r: r.id == truth[k].id and not record_differences(r, truth[k]))
        for k in range(n):
            check(root, f"t{trial} [{k}]", lambda: store[k], same(k))
            check(root, f"t{trial} get({truth[k].id})", lambda: store.get(truth[k].id), same(k))
        check(root, f"t{trial} get_many", lambda: store.get_many(list(range(n))),
              lambda rs: all(r.id == t.id and not record_differences(r, t) for r, t in zip(rs, truth)))
        check(root, f"t{trial} iter", lambda: list(store),
              lambda rs: len(rs) == n and all(r.id == t.id and not record_differences(r, t) for r, t in zip(rs, truth)))
        check(root, f"t{trial} table", lambda: store.table().to_pylist(), lambda rows: rows == columns)
        check(root, f"t{trial} quarantine", lambda: store.quarantine().num_rows, lambda q: q == 1)
        check(root, f"t{trial} verify", lambda: verify_store(root), lambda rep: True)
        store.close()
        shutil.rmtree(root)
    print(json.dumps(stats))
""")


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omni_data.schema import Rejected

    root = tmp_path_factory.mktemp("damage") / "store"
    records = emt_records(6, seed=1) + [bare_record("emt:bare")]
    records[0].metadata = {"note": "x" * 40}
    write_shard(root, "s-a", records[:4], rejected=[Rejected("x.xyz", 3, "nonfinite:forces", "emt", "x:3")])
    write_shard(root, "s-b", records[4:])
    build_id_index(root)
    return root


def _attack(store: Path, work: Path, seed: int, mode: str, trials: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", ATTACK, str(store), str(work), str(seed), mode, str(trials)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"the attack process died (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_flips_in_every_file_give_the_right_record_or_a_named_error(small_store, tmp_path, seed):
    """Flips in every file but the catalog: many reads still succeed, none is wrong."""
    stats = _attack(small_store, tmp_path / "work", seed, "flip-data", 12)
    assert stats["wrong"] == [], stats["wrong"][:5]
    assert stats["unnamed"] == [], stats["unnamed"][:5]
    assert stats["errors"] > 0 and stats["right"] > 0


def test_random_flips_in_every_file_and_the_catalog_are_named_errors(small_store, tmp_path):
    """Flips in every file including catalog.json: its checksum line refuses the store whole."""
    stats = _attack(small_store, tmp_path / "work", 4, "flip", 8)
    assert stats["wrong"] == [] and stats["unnamed"] == []
    assert stats["errors"] > 0


def test_truncated_shards_are_errors_not_sigbus(small_store, tmp_path):
    stats = _attack(small_store, tmp_path / "work", 7, "truncate", 6)
    assert stats["wrong"] == [] and stats["unnamed"] == []
    assert stats["errors"] > 0
