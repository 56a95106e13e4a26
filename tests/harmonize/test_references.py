"""Reference-energy fit: streamed normal equations against a direct lstsq on the full matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omni_data.harmonize import references as R
from omni_data.schema import Record
from tests.harmonize.conftest import emt_alloys


def _design(records):
    return np.stack([R.element_counts(r.numbers) for r in records]).astype(float)


def test_streamed_fit_matches_direct_lstsq(alloys):
    # three "shards" accumulated separately and merged == one lstsq on the whole matrix
    parts = [R.accumulate(alloys[i::3]) for i in range(3)]
    fit = R.solve_all(R.merge_all(parts))["emt"]
    a = _design(alloys)
    b = np.array([r.energy for r in alloys])
    cols = np.flatnonzero(a.sum(0))
    mu, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
    assert sorted(fit.mu) == [13, 28, 29, 79]
    np.testing.assert_allclose([fit.mu[z] for z in cols], mu, rtol=1e-9, atol=1e-9)
    # per-atom spreads from the single-pass sums == numpy on the explicit residuals
    n = a.sum(1)
    np.testing.assert_allclose(fit.e_per_atom_std_before, np.std(b / n), rtol=1e-8)
    resid = (b - a[:, cols] @ mu) / n
    np.testing.assert_allclose(fit.e_per_atom_std_after, np.std(resid), rtol=1e-6, atol=1e-10)
    assert fit.e_per_atom_std_after < fit.e_per_atom_std_before
    f = np.concatenate([r.forces.ravel() for r in alloys])
    np.testing.assert_allclose(fit.force_rms, math.sqrt(np.mean(f**2)), rtol=1e-12)
    assert fit.n_frames == 40 and fit.n_atoms == int(n.sum())


def test_exact_linear_energies_recovered(alloys):
    # energies built as Σ n μ with known μ: the fit returns μ and zero spread after
    true = {29: -3.5, 28: -4.25, 13: -2.0, 79: -3.0}
    recs = []
    for r in alloys:
        r2 = Record(**{**r.__dict__})
        r2.energy = sum(true[int(z)] for z in r.numbers)
        recs.append(r2)
    fit = R.solve_all(R.accumulate(recs))["emt"]
    for z, v in true.items():
        assert fit.mu[z] == pytest.approx(v, abs=1e-9)
    assert fit.e_per_atom_std_after == pytest.approx(0.0, abs=1e-6)
    assert not fit.underdetermined


def test_ridge_matches_closed_form(alloys):
    lam = 5.0
    fit = R.solve_all(R.accumulate(alloys), ridge=lam)["emt"]
    a = _design(alloys)[:, [13, 28, 29, 79]]
    b = np.array([r.energy for r in alloys])
    mu = np.linalg.solve(a.T @ a + lam * np.eye(4), a.T @ b)
    np.testing.assert_allclose([fit.mu[z] for z in (13, 28, 29, 79)], mu, rtol=1e-9)
    with pytest.raises(ValueError, match="ridge"):
        R.solve("emt", R.accumulate(alloys)["emt"], ridge=-1)


def test_absent_elements_and_fallback(alloys):
    other = emt_alloys(5, seed=7, task="other", dataset="o")
    for r in other:  # task "other" holds only Cu and Ni
        r.numbers = np.where(r.numbers % 2 == 0, 28, 29)
    fits = R.solve_all(R.accumulate(list(alloys) + other))
    assert fits["other"].absent == [13, 79]
    assert set(fits["other"].mu) == {28, 29}
    assert fits["emt"].absent == []
    # fallback rule: an element with no reference contributes 0.0
    mu = fits["other"].mu
    assert R.reference_energy(mu, np.array([29, 29, 13])) == pytest.approx(2 * mu[29])


def test_collinear_composition_is_flagged(alloys):
    # every frame Cu:Ni = 1:1 -> μ_Cu and μ_Ni are not separately determined
    recs = []
    for r in alloys[:10]:
        r2 = Record(**{**r.__dict__})
        r2.numbers = np.array([29, 28] * (len(r.numbers) // 2))
        recs.append(r2)
    fit = R.solve_all(R.accumulate(recs))["emt"]
    assert fit.underdetermined and fit.rank == 1
    # min-norm: the two references are equal and their sum fits the mean pair energy
    assert fit.mu[29] == pytest.approx(fit.mu[28])


def test_json_round_trip(alloys):
    fit = R.solve_all(R.accumulate(alloys))["emt"]
    back = R.TaskReferences.from_json(fit.to_json())
    assert back == fit


def test_fit_store_over_shards_and_load(tmp_path, alloys):
    from tests.harmonize.conftest import make_store

    other = emt_alloys(6, seed=5, task="pbe", dataset="b")
    store = make_store(tmp_path / "s", {"a0": alloys[:20], "a1": alloys[20:], "b0": other})
    serial = R.fit_store(str(store.path), workers=1)
    parallel = R.fit_store(str(store.path), workers=2)
    direct = R.solve_all(R.accumulate(list(alloys) + other))
    for task in ("emt", "pbe"):
        for z, v in direct[task].mu.items():
            assert serial[task].mu[z] == pytest.approx(v, rel=1e-9)
            assert parallel[task].mu[z] == pytest.approx(v, rel=1e-9)
    R.write_references(store, serial)
    from omni_data.store import Store

    reopened = Store(store.path)
    loaded = R.load_references(reopened)
    assert loaded["emt"] == serial["emt"].mu
    assert R.load_force_rms(reopened)["pbe"] == pytest.approx(serial["pbe"].force_rms)


def test_load_references_without_fit_names_the_store(tmp_path, alloys):
    from tests.harmonize.conftest import make_store

    store = make_store(tmp_path / "s", {"a0": alloys[:3]})
    with pytest.raises(KeyError, match="omni-data references"):
        R.load_references(store)


def test_columnar_path_equals_record_path(tmp_path, alloys):
    import copy

    from omni_data.store.arrow import records_to_table

    mixed = copy.deepcopy(list(alloys[:15])) + emt_alloys(4, seed=9, task="pbe", dataset="b")
    mixed[3].energy = None  # a frame without energy still counts for forces
    mixed[5].forces = None
    by_rec = R.accumulate(mixed)
    by_col = R.accumulate_table(records_to_table(mixed), batch=7)
    assert set(by_rec) == set(by_col) == {"emt", "pbe"}
    for task in by_rec:
        a, b = by_rec[task], by_col[task]
        np.testing.assert_allclose(b.ata, a.ata)
        np.testing.assert_allclose(b.atb, a.atb, rtol=1e-12)
        np.testing.assert_allclose(b.pa_bb, a.pa_bb, rtol=1e-12)
        assert (b.n_frames, b.n_no_energy, b.force_n) == (a.n_frames, a.n_no_energy, a.force_n)
        assert b.force_sq == pytest.approx(a.force_sq, rel=1e-12)
    assert by_col["emt"].n_no_energy == 1


@pytest.mark.parametrize("formats", [("arrow", "lmdb"), ("lmdb",)])
def test_fit_on_train_split_only(tmp_path, alloys, formats):
    from omni_data.harmonize.splits import split_of, split_store
    from omni_data.store import Store, write_shard

    write_shard(tmp_path / "s", "a0", alloys[:25], formats=formats)
    write_shard(tmp_path / "s", "a1", alloys[25:], formats=formats)
    with pytest.raises(FileNotFoundError, match="omni-data split"):
        R.fit_store(str(tmp_path / "s"), split="train")
    split_store(tmp_path / "s", (0.6, 0.2, 0.2), seed=2)
    labels = split_of(Store(tmp_path / "s"))
    train = [r for r, lab in zip(alloys, labels) if lab == "train"]
    assert 10 < len(train) < len(alloys)
    fit = R.fit_store(str(tmp_path / "s"), split="train")["emt"]
    direct = R.solve_all(R.accumulate(train))["emt"]
    assert fit.n_frames == len(train) and fit.split == "train"
    for z, v in direct.mu.items():
        assert fit.mu[z] == pytest.approx(v, rel=1e-9)


def _fixed_ratio_acc(n_frames: int, cu: int, ni: int, odd: tuple[int, int] | None = None):
    """Frames Cu_cu Ni_ni (plus one frame ``odd`` = (Cu, Ni) if given) with E = Σ n μ."""
    counts = np.zeros((n_frames + (odd is not None), R.N_Z))
    counts[:n_frames, 29], counts[:n_frames, 28] = cu, ni
    if odd is not None:
        counts[-1, 29], counts[-1, 28] = odd
    acc = R.RefAccumulator()
    acc.add_batch(counts, counts[:, 29] * -3.5 + counts[:, 28] * -4.25)
    return acc


def test_collinear_elements_get_undetermined_status_and_flag():
    fit = R.solve("t", _fixed_ratio_acc(6, 4, 2))
    assert fit.element_status == {28: "undetermined", 29: "undetermined"}
    assert fit.collinear == [[28, 29]] and fit.element_frames == {28: 6, 29: 6}
    # min-norm: only 4 μ_Cu + 2 μ_Ni = -22.5 is fitted
    assert 4 * fit.mu[29] + 2 * fit.mu[28] == pytest.approx(-22.5, rel=1e-12)
    assert fit.mu[29] == pytest.approx(2 * fit.mu[28])
    rows = R.element_rows(fit)
    assert [(r.symbol, r.structures, r.status, r.trusted) for r in rows] == [
        ("Ni", 6, "undetermined", False),
        ("Cu", 6, "undetermined", False),
    ]
    assert rows[0].flag.startswith("underdetermined: Ni, Cu always occur in the same proportions (rank 1 < 2)")


def test_nearly_collinear_elements_are_ill_conditioned():
    # one frame in 21 breaks the 1:1 ratio by one atom in a thousand: eigenvalue ratio ~2e-7
    fit = R.solve("t", _fixed_ratio_acc(20, 500, 500, odd=(501, 499)))
    assert not fit.underdetermined and fit.rank == 2
    assert fit.element_status == {28: "ill-conditioned", 29: "ill-conditioned"}
    assert all(r.flag.startswith("ill-conditioned: Ni, Cu almost always") for r in R.element_rows(fit))
    # one atom in a hundred (eigenvalue ratio ~2e-5): determined well enough, no flag
    fit = R.solve("t", _fixed_ratio_acc(20, 50, 50, odd=(51, 49)))
    assert fit.element_status == {28: "fitted", 29: "fitted"} and fit.collinear == []
    assert fit.mu[29] == pytest.approx(-3.5, abs=1e-9)


def test_one_collinear_pair_does_not_flag_the_others(alloys):
    # Cu and Ni replaced by a fixed CuNi pair unit; Al and Au vary freely -> only Cu, Ni flagged
    recs = []
    for r in alloys:
        r2 = Record(**{**r.__dict__})
        k = int((np.isin(r.numbers, (28, 29))).sum()) // 2
        rest = r.numbers[~np.isin(r.numbers, (28, 29))]
        r2.numbers = np.concatenate([[29, 28] * k, rest, [13]])
        recs.append(r2)
    fit = R.solve_all(R.accumulate(recs))["emt"]
    assert fit.element_status == {13: "fitted", 28: "undetermined", 29: "undetermined", 79: "fitted"}
    assert fit.collinear == [[28, 29]] and fit.underdetermined and fit.rank == 3


def test_ridge_note_and_old_sections_without_status():
    fit = R.solve("t", _fixed_ratio_acc(6, 4, 2), ridge=0.5)
    assert not fit.underdetermined  # the ridge makes the system solvable ...
    assert fit.element_status[29] == "undetermined"  # ... but the split between Cu and Ni is its choice
    assert R.element_rows(fit)[1].flag.endswith("the value shown is set by ridge λ=0.5")
    # a catalog section written before per-element status: the task flag marks every element
    old = R.solve("t", _fixed_ratio_acc(6, 4, 2)).to_json()
    for key in ("element_frames", "element_status", "collinear"):
        del old[key]
    rows = R.element_rows(R.TaskReferences.from_json(old))
    assert [(r.status, r.structures) for r in rows] == [("undetermined", None)] * 2
    assert rows[0].flag.startswith("underdetermined fit (rank 1 < 2)")
