"""Triage of reader output: schema problems, filters, duplicates each get a reason; nothing vanishes."""

from __future__ import annotations

import numpy as np
import pytest

from omni_data.harmonize.filters import apply_filters
from omni_data.manifest import Filters
from omni_data.pipeline.quarantine import Triage, filters_active, reconcile
from omni_data.schema import Rejected
from omni_data.store.testing import emt_records


def test_triage_counts_every_input():
    records = emt_records(6)
    records[1].forces[0, 1] = np.inf
    records[4].id = records[3].id  # duplicate
    triage = Triage()
    for r in records:
        triage.add(r)
    triage.add(Rejected("f.xyz", 9, "parse:bad line", "emt", "f:9"))
    assert triage.read == 7 and len(triage.records) == 4
    assert triage.reasons() == {"nonfinite": 1, "duplicate": 1, "parse": 1}
    reconcile(triage.read, len(triage.records), len(triage.rejected), "here")
    with pytest.raises(RuntimeError, match="7 inputs read but 4 written"):
        reconcile(7, 4, 2, "here")


def test_manifest_filters_are_applied():
    fn = apply_filters  # imported plainly: ingest no longer finds it through importlib
    records = emt_records(6)
    biggest = [float(np.linalg.norm(r.forces, axis=1).max()) for r in records]
    cut = sorted(biggest)[3]
    filters = Filters(max_force=cut)
    assert filters_active(filters) and not filters_active(Filters())
    triage = Triage(filters=filters, filter_fn=fn)
    for r in records:
        triage.add(r)
    assert len(triage.records) == sum(b <= cut for b in biggest)
    assert triage.reasons() == {"filter": sum(b > cut for b in biggest)}


def test_prevalidated_triage_skips_only_the_schema_check():
    """Readers whose ReaderSpec says records_validated (extxyz) already ran problem(); duplicates
    and filters are still Triage's job. The trait lives in the formats table, not on the module."""
    from omni_data.readers import READERS, get_reader

    assert READERS["extxyz"].records_validated is True and not READERS["asedb"].records_validated
    assert not hasattr(get_reader("extxyz"), "RECORDS_VALIDATED")
    records = emt_records(3)
    records[2].id = records[1].id
    triage = Triage(prevalidated=True)
    for r in records:
        triage.add(r)
    assert [r.id for r in triage.records] == [records[0].id, records[1].id]
    assert triage.reasons() == {"duplicate": 1}


def test_close_atoms_are_quarantined_with_or_without_prevalidation():
    """Atoms under the 0.1 Å floor are refused by Triage itself (no manifest filter needed),
    also for records a records_validated reader yields."""
    for prevalidated in (False, True):
        records = emt_records(3)
        records[1].positions[1] = records[1].positions[0] + [0.0, 0.03, 0.04]
        triage = Triage(prevalidated=prevalidated)
        for r in records:
            triage.add(r)
        assert [r.id for r in triage.records] == [records[0].id, records[2].id]
        (rejected,) = triage.rejected
        assert rejected.reason == "bad_value:atoms 0 and 1 are 0.050 Å apart (< 0.1 Å)"
        assert rejected.source_id == records[1].id and triage.reasons() == {"bad_value": 1}


def test_invalid_optional_label_is_dropped_counted_and_the_record_kept():
    records = emt_records(4)
    for r in records[:3]:
        r.spin = 0  # SchNetPack's "not set"
    records[1].charge = float("nan")
    energies = [r.energy for r in records]
    triage = Triage()
    for r in records:
        triage.add(r)
    assert len(triage.records) == 4 and not triage.rejected
    assert dict(triage.dropped) == {"spin": 3, "charge": 1}
    assert [r.energy for r in triage.records] == energies  # labels that were valid are all kept
    assert [r.spin for r in triage.records] == [None, None, None, None]
    assert triage.records[1].metadata["dropped_labels"] == {
        "spin": "spin multiplicity 0 < 1",
        "charge": "charge nan is not finite",
    }


def test_examples_keep_the_first_full_reason_of_each_kind():
    triage = Triage()
    triage.add(Rejected("f.xyz", 1, "parse:bad line 3", "d", "f:1"))
    triage.add(Rejected("f.xyz", 2, "parse:bad line 9", "d", "f:2"))
    triage.add(Rejected("f.xyz", 3, "empty:zero atoms", "d", "f:3"))
    assert triage.examples() == {"parse": "parse:bad line 3", "empty": "empty:zero atoms"}
