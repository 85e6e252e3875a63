"""A killed run resumed with `ckpt_path=last run=<its folder>` ends exactly like an uninterrupted run.

The run is killed hard (os._exit, like `kill -9` or a Slurm pre-emption) at the start of its third
epoch, after its best epoch and one worse epoch were checkpointed; the same command plus `ckpt_path=last
run=<folder>` (no hydra.run.dir: the resume finds its folder) must then finish in the same folder and
W&B run with bit-identical last weights, the same best.ckpt (epoch and weights), val/bal_acc_best,
test metrics and metrics.csv history.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from stainfree.models.checkpoint import read_checkpoint_meta

ROOT = Path(__file__).resolve().parents[1]
KILLER = '''
import os
import pytorch_lightning as pl


class KillAtEpochStart(pl.Callback):
    """Die without any cleanup when epoch ``epoch`` starts (the previous one is checkpointed)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os._exit(137)
'''


OVERRIDES = ["experiment=demo", "data.synthetic.frames_notreat=6", "data.stride=224", "data.num_workers=0",
             "model.backbone.name=test_resnet", "model.input_size=32", "trainer.max_epochs=4", "logger=many_loggers",
             # epoch 0 is the best of this tiny run, 1 and 2 are worse: early stopping ends it after epoch 2,
             # so best.ckpt and the stop both depend on callback state saved BEFORE the kill
             "callbacks.early_stopping.patience=2"]
KILL_EPOCH = 2
TIMING = ("train/time_s", "train/images_per_s")  # wall-clock figures differ between any two runs


def _prepare_data(tmp: Path) -> None:
    """Generate the synthetic frames and the patch cache in this process (what prepare_data does)."""
    import hydra
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*OVERRIDES, f"paths.data_dir={tmp / 'data'}", f"paths.output_dir={tmp}"])
    hydra.utils.instantiate(cfg.data).prepare_data()


def _train(tmp: Path, run_dir: Path | None, *extra: str, wait: bool = True):
    """Run train.py on a tiny demo set; ``wait=False`` returns the Popen (two runs share 2 cores)."""
    env = dict(os.environ, PYTHONPATH=f"{tmp}{os.pathsep}{ROOT / 'src'}", WANDB_MODE="offline",
               WANDB_SILENT="true", NO_ALBUMENTATIONS_UPDATE="1")
    env.pop("WANDB_API_KEY", None)
    # an earlier in-process W&B run (e.g. test_eval_cli's) leaves its service address here; sharing it,
    # the resumed run is refused ("run ID ... is in use") while the killed run is still registered there
    env.pop("WANDB_SERVICE", None)
    cmd = [sys.executable, str(ROOT / "train.py"), *OVERRIDES, f"paths.data_dir={tmp / 'data'}",
           f"paths.log_dir={tmp / 'logs'}", *([f"hydra.run.dir={run_dir}"] if run_dir else []), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if not wait:
        return proc
    return _finish(proc)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _wandb_ids(run_dir: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*"))


def _metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "csv" / "metrics.csv").drop(columns=list(TIMING), errors="ignore")


def _test_metrics(out: str) -> dict[str, str]:
    """The headline lines train.py prints at the end (test/bal_acc with its interval, val/bal_acc_best, ...)."""
    return {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()
            if line.strip().startswith(("test/", "val/bal_acc_best"))}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three trainings, each allowed 600 s
def test_resume_killed_run_matches_uninterrupted_run(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _prepare_data(tmp_path)  # once, before two runs start in parallel
    first = _train(tmp_path, straight, wait=False)
    second = _train(tmp_path, resumed, "+callbacks.kill._target_=killer.KillAtEpochStart", f"+callbacks.kill.epoch={KILL_EPOCH}",
                    wait=False)
    done, killed = _finish(first), _finish(second)
    assert done.returncode == 0, done.stderr[-3000:]
    assert killed.returncode == 137, killed.stderr[-3000:]
    partial = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert partial["epoch"] == KILL_EPOCH - 1
    again = _train(tmp_path, None, "ckpt_path=last", f"run={resumed}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "logs").glob("train/runs/*")) == [], "the resume made a new run folder"

    a = torch.load(straight / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # last.ckpt must be the end of training, not the last epoch that improved the monitored metric
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 9)  # early-stopped
    _assert_same_weights(a, b)
    best_a = torch.load(straight / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    best_b = torch.load(resumed / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert (best_a["epoch"], best_a["global_step"]) == (best_b["epoch"], best_b["global_step"])
    assert best_a["epoch"] < KILL_EPOCH, "the best epoch must precede the kill for this test to mean anything"
    _assert_same_weights(best_a, best_b)
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    # val/bal_acc_best and the test metrics printed at the end, and the whole metrics.csv history
    shown_a, shown_b = _test_metrics(done.stdout), _test_metrics(again.stdout)
    assert {"test/bal_acc", "test/auroc", "val/bal_acc_best"} <= set(shown_a) and shown_a == shown_b, (shown_a, shown_b)
    pd.testing.assert_frame_equal(_metrics(straight), _metrics(resumed))
    # the resumed process logged into the same W&B run as the killed one
    ids = _wandb_ids(resumed)
    assert len(ids) == 2 and len(set(ids)) == 1, ids
    assert read_checkpoint_meta(resumed / "checkpoints" / "last.ckpt").wandb_id == ids[0]
    print(f"best epoch {best_a['epoch']}; straight {shown_a}; resumed {shown_b}")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"


def test_last_checkpoint_follows_every_epoch_even_on_a_plateau(tmp_path):
    """With the project's checkpoint callbacks, last.ckpt is the newest epoch, not the last improvement.

    (Lightning 2.6 only refreshes `save_last` when a top-k checkpoint was written; a resume from a
    stale last.ckpt would silently repeat epochs.) lr=0 freezes the model, so val/bal_acc never improves.
    """
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from torch.utils.data import DataLoader

    from stainfree.models.classifier import LiveDeadClassifier
    from stainfree.utils.instantiate import instantiate_callbacks

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["callbacks=default", f"paths.output_dir={tmp_path}"])
    callbacks = [c for c in instantiate_callbacks(cfg.callbacks) if isinstance(c, pl.callbacks.ModelCheckpoint)]
    assert callbacks, "callbacks=default has no ModelCheckpoint"
    model = LiveDeadClassifier(backbone=dict(name="test_resnet", num_classes=2),
                               optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0},
                               input_size=32)
    g = torch.Generator().manual_seed(0)
    batches = [dict(image=torch.randint(0, 255, (4, 1, 32, 32), dtype=torch.uint8, generator=g),
                    target=torch.tensor([0, 1, 0, 1]), index=torch.arange(4) + 4 * i) for i in range(2)]
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=callbacks,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(batches, batch_size=None), DataLoader(batches, batch_size=None))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 6)
