"""Issue 8 items 1 and 7, cases the data-contract tests (test_data_cache_identity.py) leave out:
a truncated frame after caching, and a killed JIMT-1 frames build's temp folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stainfree.data.jimt.preprocess import FrameError
from test_data_cache_identity import ROOT, cached, write_set


def test_truncated_bright_field_file_stops_the_run_naming_it(tmp_path: Path) -> None:
    """Case 1 (truncated image): a frame cut short after caching is noticed by default and named in one line."""
    manifest = write_set(tmp_path / "set", seeds=[8, 8, 8, 8])
    cached(manifest, tmp_path / "cache")
    target = tmp_path / "set" / "bf" / "f1.tif"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])  # a copy interrupted half-way
    with pytest.raises(FrameError, match=r"bf/f1\.tif") as err:
        cached(manifest, tmp_path / "cache")
    assert "\n" not in str(err.value)


@pytest.mark.slow  # starts (and kills) a process
def test_killed_frames_build_temp_folder_is_removed_by_the_next_build(tmp_path: Path) -> None:
    """Case 7 (stale temp folder): a JIMT-1 frames build killed mid-way left its temp folder forever."""
    cache = tmp_path / "cache"
    code = ("import os, signal, sys; sys.path.insert(0, %r)\n"
            "from stainfree.utils.atomic import atomic_dir\n"
            "with atomic_dir(%r) as tmp:\n"
            "    (tmp / 'bf8.npy').write_bytes(b'x' * 4096)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n") % (str(ROOT / "src"), str(cache / "frames-0123456789ab"))
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == -signal.SIGKILL
    assert [p.name for p in cache.iterdir() if p.name.startswith(".frames-")]
    prepared = cached(write_set(tmp_path / "set", seeds=[9, 9, 9]), cache)
    assert prepared.built and not [p for p in os.listdir(cache) if p.startswith(".")]
