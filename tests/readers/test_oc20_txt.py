"""oc20_txt: the OC20 S2EF per-frame metadata files (``random<sid>,frame<fid>,<ref energy>``).

Fixture lines follow the layout of the OC20 S2EF release (fairchem docs "OC20 S2EF" download:
each ``<n>.extxyz.xz`` has a ``<n>.txt.xz`` whose line i is frame i's system id, frame id and
reference energy)."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from omni_data.readers import ReaderError
from omni_data.readers.oc20_txt import FrameInfo, frame_metadata, txt_for


def test_reads_plain_and_xz(tmp_path: Path) -> None:
    text = "random1331004,frame47,-0.5361\nrandom1331004,frame48,-0.5361\n\nrandom77,frame0,12.25\n"
    (tmp_path / "3.extxyz.xz").write_bytes(b"")
    (tmp_path / "3.txt.xz").write_bytes(lzma.compress(text.encode()))
    (tmp_path / "4.extxyz").write_bytes(b"")
    (tmp_path / "4.txt").write_text("random5,frame9\n")  # test split: no reference energy
    txt = txt_for(tmp_path / "3.extxyz.xz")
    assert txt == tmp_path / "3.txt.xz"
    infos = frame_metadata(txt)
    assert infos == [FrameInfo(1331004, 47, -0.5361), FrameInfo(1331004, 48, -0.5361), FrameInfo(77, 0, 12.25)]
    assert infos[2].metadata() == {"sid": 77, "fid": 0, "reference_energy": 12.25}
    assert frame_metadata(txt_for(tmp_path / "4.extxyz"))[0].metadata() == {"sid": 5, "fid": 9}
    assert txt_for(tmp_path / "missing.extxyz.xz") is None


@pytest.mark.parametrize("line", ["random1,frameX,0.1", "random1", "random1,frame2,abc", "random1,frame2,nan"])
def test_bad_line_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "0.txt"
    path.write_text(f"random1,frame1,0.0\n{line}\n")
    with pytest.raises(ReaderError, match=r"0\.txt line 2"):
        frame_metadata(path)
