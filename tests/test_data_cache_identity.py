"""Issue 8 (items 1, 2, 7): caches cover the data they were built from; copies never straddle splits;
killed builds leave nothing behind. Each case failed on the code before the data contract."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from stainfree.data.duplicates import DuplicateImagesError
from stainfree.data.identity import MissingSourceError, file_identity
from stainfree.data.jimt.datamodule import JimtDataModule
from stainfree.data.jimt.preprocess import FrameError, normalise_config, prepare
from stainfree.data.jimt.synthetic import generate_frame
from stainfree.data.module import SampleDataModule
from stainfree.data.samples import SampleTableError

ROOT = Path(__file__).resolve().parents[1]
FIXED = {"method": "fixed", "live_below": 259.0, "dead_above": 397.0}


def write_set(folder: Path, seeds: list[int], ids: list[str] | None = None, bf_files: list[str] | None = None) -> Path:
    """A manifest with relative paths bf/<id>.tif, pi/<id>.tif (synthetic frames drawn with ``seeds``)."""
    (folder / "bf").mkdir(parents=True, exist_ok=True)
    (folder / "pi").mkdir(exist_ok=True)
    ids = ids or [f"f{i}" for i in range(len(seeds))]
    rows = []
    for k, (fid, seed) in enumerate(zip(ids, seeds)):
        frame = generate_frame("notreat", k, seed=seed, n_frames=len(seeds))
        tifffile.imwrite(folder / "bf" / f"{fid}.tif", frame.bf)
        tifffile.imwrite(folder / "pi" / f"{fid}.tif", frame.pi)
        rows.append({"frame_id": fid, "dataset": "notreat", "bf_path": f"bf/{fid}.tif", "pi_path": f"pi/{fid}.tif"})
    manifest = pd.DataFrame(rows)
    if bf_files:  # several frame ids pointing at one BF file
        manifest["bf_path"] = bf_files
    manifest.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def jimt(manifest: Path, cache: Path, **kw) -> JimtDataModule:
    args = dict(manifest=manifest, cache_dir=cache, stride=224, input_size=16, labels=FIXED, batch_size=4,
                empty_filter={"method": "none"})
    args.update(kw)
    return JimtDataModule(**args)


def cached(manifest: Path, cache: Path):
    return prepare(manifest, cache, normalise_config(stride=224, labels_cfg=FIXED, empty_filter_cfg={"method": "none"}),
                   verbose=True)


def test_same_relative_paths_in_another_folder_are_not_reused(tmp_path: Path) -> None:
    first = write_set(tmp_path / "lab_a", seeds=[1, 1, 1, 1])
    second = write_set(tmp_path / "lab_b", seeds=[2, 2, 2, 2])
    assert first.read_bytes() == second.read_bytes()  # byte-identical manifests
    a, b = cached(first, tmp_path / "cache"), cached(second, tmp_path / "cache")
    assert b.built and a.frames_dir != b.frames_dir
    assert not np.array_equal(np.load(a.bf8_path), np.load(b.bf8_path))
    dm = jimt(second, tmp_path / "cache")
    dm.setup("fit")
    assert set(dm.split_table("fit")["frame_id"]) <= {"f0", "f1", "f2", "f3"}
    first_patch = next(iter(dm.test_dataloader()))["image"][0, 0].numpy()
    row = dm.split_table("test").iloc[0]
    frame = np.load(b.bf8_path)[int(row["frame_idx"])]
    window = frame[int(row["y"]):int(row["y"]) + 224, int(row["x"]):int(row["x"]) + 224]
    assert np.array_equal(first_patch, cv2.resize(window, (16, 16), interpolation=cv2.INTER_AREA))


def test_deleted_bright_field_file_stops_the_run_naming_it(tmp_path: Path) -> None:
    manifest = write_set(tmp_path / "set", seeds=[3, 3, 3, 3])
    cached(manifest, tmp_path / "cache")
    (tmp_path / "set" / "bf" / "f2.tif").unlink()
    with pytest.raises(FrameError, match=r"^frame 'f2' listed in .*manifest\.csv: .*bf/f2\.tif: no such file"):
        cached(manifest, tmp_path / "cache")


def test_replaced_image_is_noticed_and_the_cache_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = write_set(tmp_path / "set", seeds=[4, 4, 4, 4])
    before = cached(manifest, tmp_path / "cache")
    old_bf8 = np.load(before.bf8_path)
    capsys.readouterr()
    other = generate_frame("notreat", 0, seed=99, n_frames=4)
    tifffile.imwrite(tmp_path / "set" / "bf" / "f1.tif", other.bf)  # a different image under the same name
    after = cached(manifest, tmp_path / "cache")
    out = capsys.readouterr().out
    assert "1 source file(s) changed since the cache was built" in out and "bf/f1.tif" in out
    new_bf8 = np.load(after.bf8_path)
    assert not np.array_equal(old_bf8[1], new_bf8[1]) and np.array_equal(old_bf8[0], new_bf8[0])
    assert not before.frames_dir.exists() and not before.folder.exists()  # stale frames and their index
    assert len(list((tmp_path / "cache").glob("frames-*"))) == 1


def test_content_check_catches_a_same_size_same_mtime_replacement(tmp_path: Path, capsys) -> None:
    manifest = write_set(tmp_path / "set", seeds=[5, 5, 5])
    jimt(manifest, tmp_path / "cache", verify="sample").setup("fit")
    target = tmp_path / "set" / "bf" / "f0.tif"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-10:] = bytes(10)  # last pixels zeroed: same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    capsys.readouterr()
    jimt(manifest, tmp_path / "cache", verify="none").setup("fit")  # size + mtime only: cannot see it
    assert "changed" not in capsys.readouterr().out
    jimt(manifest, tmp_path / "cache", verify="sample").setup("fit")
    assert "bf/f0.tif" in capsys.readouterr().out


def test_one_image_under_two_frame_ids_stays_in_one_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ids = [f"f{i}" for i in range(10)]
    bf = [f"bf/{i}.tif" for i in ids]
    bf[7] = "bf/f2.tif"  # frame f7 is the same bright-field image as f2
    manifest = write_set(tmp_path / "set", seeds=[6] * 10, ids=ids, bf_files=bf)
    for seed in range(6):  # whatever the split draw, the two ids land together (by chance: p = 0.27 per draw)
        dm = jimt(manifest, tmp_path / "cache", split={"train": 0.4, "val": 0.3, "test": 0.3, "seed": seed})
        dm.setup("fit")
        where = {s: set(dm.split_table(s)["frame_id"]) for s in ("fit", "validate", "test")}
        assert sum(bool({"f2", "f7"} & frames) for frames in where.values()) == 1, (seed, where)
    assert "1 frame(s) show the same bright-field image as another frame (f2 = f7)" in capsys.readouterr().out


def test_refusing_copies_stops_with_one_line(tmp_path: Path) -> None:
    ids = ["a", "b", "c", "d"]
    manifest = write_set(tmp_path / "set", seeds=[7] * 4, ids=ids, bf_files=["bf/a.tif", "bf/b.tif", "bf/a.tif", "bf/d.tif"])
    with pytest.raises(DuplicateImagesError, match=r"^2 manifest frames show identical bright-field images .*a .*c \("):
        jimt(manifest, tmp_path / "cache", duplicates={"exact": "refuse"}).setup("fit")


def _kill_inside_atomic_dir(cache: Path) -> None:
    code = ("import os, signal, sys; sys.path.insert(0, %r)\n"
            "from stainfree.utils.atomic import atomic_dir\n"
            "with atomic_dir(%r) as tmp:\n"
            "    (tmp / 'crops.npy').write_bytes(b'x' * 4096)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n") % (str(ROOT / "src"), str(cache / "samples-0123456789ab-01234567"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == -signal.SIGKILL


def test_killed_store_build_leaves_no_temp_folder_after_the_next_build(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _kill_inside_atomic_dir(cache)
    leftovers = [p for p in cache.iterdir() if p.name.startswith(".samples-")]
    assert len(leftovers) == 1 and (leftovers[0] / "crops.npy").is_file()
    images = tmp_path / "img"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(9):
        tifffile.imwrite(images / f"i{i}.tif", rng.integers(0, 4000, (40, 40), dtype=np.uint16))
        rows.append({"path": f"i{i}.tif", "label": "dead" if i % 3 == 0 else "live"})
    pd.DataFrame(rows).to_csv(images / "t.csv", index=False)
    dm = SampleDataModule(source="table", table=images / "t.csv", input_size=8, cache_dir=cache,
                          split={"train": 0.34, "val": 0.33, "test": 0.33})
    dm.prepare_data()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    # a temp folder of a live build (this process) is never touched
    from stainfree.utils.atomic import atomic_dir, remove_stale_temp_dirs

    with atomic_dir(cache / "samples-live") as tmp:
        assert remove_stale_temp_dirs(cache) == [] and tmp.is_dir()


def test_missing_and_changed_files_of_a_generic_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(9):
        tifffile.imwrite(tmp_path / f"i{i}.tif", rng.integers(0, 4000, (40, 40), dtype=np.uint16))
        rows.append({"path": f"i{i}.tif", "label": "dead" if i % 3 == 0 else "live"})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)

    def dm() -> SampleDataModule:
        return SampleDataModule(source="table", table=tmp_path / "t.csv", input_size=8, cache_dir=tmp_path / "c",
                                split={"train": 0.34, "val": 0.33, "test": 0.33})

    first = dm()
    first.setup("fit")
    crops = np.array(first.store.array)
    tifffile.imwrite(tmp_path / "i4.tif", rng.integers(0, 4000, (40, 40), dtype=np.uint16))
    capsys.readouterr()
    second = dm()
    second.setup("fit")
    assert "i4.tif" in capsys.readouterr().out and second.store.built
    changed = np.flatnonzero([not np.array_equal(a, b) for a, b in zip(crops, second.store.array)])
    assert changed.tolist() == [4]
    (tmp_path / "i0.tif").unlink()
    with pytest.raises(SampleTableError, match=r"^data.table=.*t\.csv: 1 image file\(s\) do not exist: .*i0\.tif;"):
        dm().setup("fit")
    with pytest.raises(MissingSourceError, match=r"i0\.tif: no such file, but the data lists it"):
        file_identity(tmp_path / "i0.tif")
