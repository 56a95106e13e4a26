"""Every manifest lists its release files as published: https URL, split, checksum or a note saying why not.

The values themselves come from the publishers' pages (each manifest names its source in a comment);
these tests hold the shape of every entry and the notes that must explain what is missing.
"""

from __future__ import annotations

import re

import pytest

from omni_data.manifest import list_manifests, load_manifest

SPLITS = {"train", "val", "test", "all"}
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX64 = re.compile(r"[0-9a-f]{64}")
NO_CHECKSUM = ("no checksum is published", "no checksum could be read")
NO_SIZE = "no exact byte size"
NO_LIST_HERE = "could not be read here"
NO_DOWNLOAD_BRIDGE = "has no download"

NAMES = sorted(list_manifests())


def _notes(name: str) -> str:
    return " ".join(load_manifest(name).notes.split()).lower()


def test_fifteen_manifests_are_checked():
    assert len(NAMES) == 15


@pytest.mark.parametrize("name", NAMES)
def test_release_files_have_https_url_split_and_unique_names(name):
    m = load_manifest(name)
    names = [f.name for f in m.files]
    assert len(names) == len(set(names)), f"{name}: duplicate file names"
    for f in m.files:
        assert f.url.startswith("https://"), f"{name}: {f.name}: url {f.url!r} is not https"
        assert f.split in SPLITS, f"{name}: {f.name}: split {f.split!r}"
        assert not f.name.startswith("/") and ".." not in f.name.split("/"), f"{name}: {f.name}: not relative"


@pytest.mark.parametrize("name", NAMES)
def test_every_file_has_a_checksum_or_the_notes_say_none_is_published(name):
    m = load_manifest(name)
    notes = _notes(name)
    for f in m.files:
        if f.md5 is not None:
            assert HEX32.fullmatch(f.md5), f"{name}: {f.name}: md5 {f.md5!r} is not 32 lower-case hex"
        if f.sha256 is not None:
            assert HEX64.fullmatch(f.sha256), f"{name}: {f.name}: sha256 {f.sha256!r} is not 64 lower-case hex"
        if f.md5 is None and f.sha256 is None:
            assert any(s in notes for s in NO_CHECKSUM), f"{name}: {f.name}: no checksum and the notes do not say why"


@pytest.mark.parametrize("name", NAMES)
def test_every_file_has_a_size_or_the_notes_say_none_is_published(name):
    m = load_manifest(name)
    for f in m.files:
        if f.size_bytes is None:
            assert NO_SIZE in _notes(name), f"{name}: {f.name}: no size_bytes and the notes do not say why"
            assert f.size_approx or m.listing is not None, f"{name}: {f.name}: neither a rounded size nor a listing"
        else:
            assert isinstance(f.size_bytes, int) and f.size_bytes > 0, f"{name}: {f.name}: size {f.size_bytes!r}"


@pytest.mark.parametrize("name", NAMES)
def test_a_rounded_size_is_given_wherever_the_notes_say_one_is_published(name):
    m = load_manifest(name)
    if "size_approx" not in _notes(name):
        assert all(f.size_approx == "" for f in m.files), f"{name}: size_approx given but the notes do not say so"
        return
    for f in m.files:
        assert f.size_bytes is not None or f.approx_bytes, f"{name}: {f.name}: neither size_bytes nor size_approx"


def test_published_rounded_sizes_are_data():
    """The publishers' rounded sizes (see the comment above each file) as size_approx."""
    omat = {(f.split, f.subset): f.size_approx for f in load_manifest("omat24").files}
    assert (omat["train", "rattled-1000"], omat["val", "rattled-1000"]) == ("21 GB", "218 MB")
    oc20 = {f.subset: f.size_approx for f in load_manifest("oc20").files}
    assert (oc20["s2ef_all"], oc20["s2ef_200k"]) == ("225 GB", "344 MB")
    omol = {f.name: f for f in load_manifest("omol25").files}
    assert (omol["train.tar.gz"].size_bytes, omol["train.tar.gz"].size_approx) == (488754888740, "")
    assert (omol["val.tar.gz"].size_approx, omol["neutral_val.tar.gz"].size_approx) == ("20 GB", "119 MB")
    assert [f.size_approx for f in load_manifest("salex").files] == ["7.6 GB", "408 MB"]
    assert [f.size_approx for f in load_manifest("mad").files] == ["232 MiB", "29 MiB", "29 MiB"]
    assert (load_manifest("oc22").files[0].size_approx, load_manifest("odac23").files[0].size_approx) == (
        "20 GB",
        "172 GB",
    )


UNVERIFIED_LAYOUT = re.compile(r"release layout( \(.*?\))? not checked against a real release file")
NO_REAL_SAMPLE = (
    "matpes_pbe",
    "matpes_r2scan",
    "mp_aloe",
    "mp_r2scan",
    "mptrj",
    "oc20",
    "oc22",
    "odac23",
    "omat24",
    "qcml",
    "salex",
)


@pytest.mark.parametrize("name", NO_REAL_SAMPLE)
def test_a_release_never_read_here_says_its_layout_is_unverified(name):
    """No small real file of these releases was found in a public repository (issue 21, item 3)."""
    assert UNVERIFIED_LAYOUT.search(_notes(name)), f"{name}: the notes do not say the layout is unverified"


@pytest.mark.parametrize("name", NAMES)
def test_a_manifest_without_files_says_why(name):
    """Without files a manifest names the publisher's API that lists them (``listing``) and says why
    the list is not copied in; only the bridge task (recomputed by the user) has no download."""
    m = load_manifest(name)
    if not m.files:
        notes = _notes(name)
        if name == "bridge":
            assert NO_DOWNLOAD_BRIDGE in notes
        else:
            assert m.listing is not None and NO_LIST_HERE in notes, name


def test_published_values_read_from_the_publishers():
    """Spot values copied from the publishers' records (see the comment above each files list)."""
    mptrj = {f.name: f for f in load_manifest("mptrj").files}["MPtrj_2022.9_full.json"]
    assert (mptrj.size_bytes, mptrj.md5) == (12188168685, "50ead5f27f9a4f6beb7564c4188f1e9f")
    spice = load_manifest("spice").files[0]
    assert (spice.size_bytes, spice.md5) == (37479271148, "bfba2224b6540e1390a579569b475510")
    aloe = load_manifest("mp_aloe").files[0]
    assert (aloe.name, aloe.size_bytes, aloe.md5) == (
        "MP_ALOE_data.jsonl.gz",
        675635633,
        "0cac41b76cdc936848d360a14bdc9bf2",
    )
    oc20 = {f.subset: f for f in load_manifest("oc20").files}
    assert oc20["s2ef_200k"].md5 == "f8d0909c2623a393148435dede7d3a46" and oc20["s2ef_200k"].split == "train"
    assert {f.split for f in oc20.values()} == {"train", "val"}
    omat = load_manifest("omat24").files
    assert len(omat) == 22 and {f.split for f in omat} == {"train", "val"}
    assert {f.subset for f in omat if f.split == "val"} == {f.subset for f in omat if f.split == "train"}
    assert load_manifest("oc22").files[0].md5 == "ebea523c6f8d61248a37b4dd660b11e6"
    assert load_manifest("odac23").files[0].md5 == "162f0660b2f1c9209c5b57f7b9e545a7"


def test_mp_aloe_is_read_as_matpes_json_lines_with_its_own_id_key():
    m = load_manifest("mp_aloe")
    assert m.format == "matpes_json" and m.key_map["id"] == "mp_aloe_id"
    assert any(g.endswith(".jsonl.gz") for g in m.globs)


def test_mp_aloe_json_lines_layout_ingests_through_the_manifest(tmp_path):
    """Two lines in the key layout public code reads from MP_ALOE_data.jsonl.gz (one MP-sourced, one not)."""
    import gzip
    import json

    from pymatgen.core import Lattice, Structure

    from omni_data.harmonize.splits import group_value
    from omni_data.readers import get_reader
    from omni_data.units import KBAR_EVA3

    lines = []
    for i, parent in enumerate(["mp-149", None]):
        struct = Structure(Lattice.cubic(5.4 + 0.1 * i), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
        lines.append(
            {
                "mp_aloe_id": f"aloe-{i}",
                "structure": struct.as_dict(),
                "energy": -10.5 - i,
                "forces": [[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]],
                "stress": [10.0, 10.0, 10.0, 0.0, 0.0, 0.0],
                "magmoms": None,
                "elements": ["Si"],
                "formula_pretty": "Si",
                "functional": "r2SCAN",
                "prototype_number": 3,
                "ionic_step_number": i,
                "provenance": {"original_mp_id": parent},
            }
        )
    path = tmp_path / "MP_ALOE_data.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    m = load_manifest("mp_aloe")
    reader = get_reader(m.format)
    recs = [r for p in reader.partitions(path, 10) for r in reader.read(p, m.read_options())]
    assert [r.id for r in recs] == ["mp_aloe:aloe-0", "mp_aloe:aloe-1"]
    assert [r.energy for r in recs] == [-10.5, -11.5] and recs[0].task == "matpes_r2scan"
    assert recs[0].stress[0] == pytest.approx(-10 * KBAR_EVA3)
    assert recs[0].metadata["mp_id"] == "mp-149" and "mp_id" not in recs[1].metadata
    assert {group_value(r, m.group_key) for r in recs} == {"Si2"}  # every record has a group


def test_omol25_neutral_archives_use_the_served_file_names():
    """The card's link text says train_neutral/val_neutral, but its links (and public scripts) fetch neutral_*."""
    files = {f.name: f for f in load_manifest("omol25").files}
    base = "https://dl.fbaipublicfiles.com/opencatalystproject/data/omol/250514/"
    assert files["neutral_train.tar.gz"].url == base + "neutral_train.tar.gz"
    assert files["neutral_val.tar.gz"].url == base + "neutral_val.tar.gz"
    assert (files["neutral_train.tar.gz"].split, files["neutral_val.tar.gz"].split) == ("train", "val")
    assert {f.subset for f in files.values()} == {"all", "4M", "neutral"}
    assert files["train.tar.gz"].size_bytes == 488754888740


@pytest.mark.parametrize("name", NAMES)
def test_fbaipublicfiles_urls_end_in_the_file_name(name):
    """dl.fbaipublicfiles.com serves each archive under its own name: the manifest name must match the URL."""
    for f in load_manifest(name).files:
        if f.url.startswith("https://dl.fbaipublicfiles.com/"):
            assert f.url.rsplit("/", 1)[1] == f.name.rsplit("/", 1)[-1], f"{name}: {f.name} vs {f.url}"


def test_mad_files_come_from_the_record_the_manifest_names():
    m = load_manifest("mad")
    assert m.url == "https://archive.materialscloud.org/records/xdsbt-a3r17"
    assert [f.url for f in m.files] == [f"{m.url}/files/mad-{s}.xyz?download=1" for s in ("train", "val", "test")]
    assert [f.split for f in m.files] == ["train", "val", "test"]


def test_releases_without_a_file_list_name_where_the_data_is():
    qcml, r2scan = load_manifest("qcml"), load_manifest("mp_r2scan")
    assert not qcml.files and "gs://qcml-datasets/tfds/qcml/dft_force_field/1.0.0" in _notes("qcml")
    assert (qcml.listing.api, qcml.listing.bucket, qcml.listing.prefix) == (
        "gcs",
        "qcml-datasets",
        "tfds/qcml/dft_force_field/1.0.0/",
    )
    assert (r2scan.listing.api, r2scan.listing.record, r2scan.listing.version) == ("figshare", "28245650", 2)
    assert qcml.licence == "CC-BY-NC-4.0"  # the publisher's example script links by-nc/4.0
    assert not r2scan.files and r2scan.url == "https://doi.org/10.6084/m9.figshare.28245650.v2"
    assert "28245650" in _notes("mp_r2scan") and r2scan.size["structures"] == 240000
