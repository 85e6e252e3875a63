"""trainer=ddp on 2 CPU processes (gloo): runs, logs once, and tests on the un-padded test set.

SyncBatchNorm is GPU-only in torch (DDP refuses it on CPU modules), so it is switched off here;
everything else is `trainer=ddp` as shipped. The tiny demo set is chosen so the test split has an
odd number of patches: the DistributedSampler pads it by one for 2 ranks, and the logged test
metrics must still come from exactly the real patches.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

ROOT = Path(__file__).resolve().parents[1]
# the paper's PI thresholds: a 6-10 frame set is too small for a reliable mixture fit
DATA = ["experiment=demo", "data.num_workers=0", "model.backbone.name=test_resnet",
        "model.input_size=32", "data.labels.method=fixed", "data.labels.live_below=258.97",
        "data.labels.dead_above=396.89"]


def _prepare(tmp: Path) -> tuple[list[str], int]:
    """Build a tiny demo set whose test split is odd (so the sampler must pad); returns
    (overrides, test size)."""
    import hydra
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    for frames, stride in ((6, 224), (7, 224), (6, 192), (7, 192), (6, 160), (8, 224), (8, 192)):
        data = [*DATA, f"data.synthetic.frames_notreat={frames}", f"data.stride={stride}",
                f"paths.data_dir={tmp / f'data{frames}'}"]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[*data, f"paths.output_dir={tmp}"])
        dm = hydra.utils.instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        dm.setup("test")
        n_test = len(dm.split_table("test"))
        if n_test % 2 == 1:
            return data, n_test
    pytest.fail("no tiny demo set with an odd test split; the padding case cannot be exercised")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the subprocess alone may take 900 s
@pytest.mark.parametrize("strategy,logger", [
    ("ddp", "csv"),
    ("ddp_spawn", "none"),
    # the parent's CSVLogger must adopt the columns the spawned fit wrote (tasks.train.adopt_csv_columns)
    ("ddp_spawn", "csv"),
])
def test_ddp_two_cpu_processes_unpadded_test_metrics(tmp_path, strategy, logger):
    data, n_test = _prepare(tmp_path)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), WANDB_MODE="offline", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [sys.executable, str(ROOT / "train.py"), *data, "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true", "trainer.sync_batchnorm=false",
           # a lone last batch per rank is dropped by the loader (samplers.drop_lone_last_batch)
           "data.batch_size=16", f"trainer.strategy={strategy}", "trainer.max_epochs=1",
           f"logger={logger}", f"paths.log_dir={tmp_path / 'logs'}",
           f"hydra.run.dir={run}"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    predictions = pd.read_csv(run / "eval" / "predictions.csv")
    assert len(predictions) == n_test and predictions["index"].is_unique
    assert sorted(predictions["index"]) == list(range(n_test))
    expected = balanced_accuracy_score(predictions["target"], predictions["pred"])
    report = json.loads((run / "eval" / "metrics.json").read_text())
    assert report["n"] == n_test and report["bal_acc"] == pytest.approx(expected, abs=1e-6)
    if logger == "csv":
        logged = pd.read_csv(run / "csv" / "metrics.csv")["test/bal_acc"].dropna()
        assert len(logged) == 1  # rank zero logs once
        assert logged.iloc[0] == pytest.approx(expected, abs=1e-6)
    assert not list(tmp_path.glob("logs/**/runs/*"))  # no second run folder from the re-launched rank
