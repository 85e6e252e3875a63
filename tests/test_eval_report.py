"""Report + EvalReport callback on a tiny stand-in DataModule and the real LiveDeadClassifier."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from stainfree.callbacks.eval_report import EvalReport
from stainfree.evaluation.report import ReportError, gradcam_selection, write_report
from stainfree.models.classifier import LiveDeadClassifier

SIZE = 32
FIGURES = {"roc", "confusion_matrix", "pi_vs_score", "pi_histogram", "tsne", "tsne_thumbnails",
           "gradcam_confident", "gradcam_misclassified"}


class _Patches(Dataset):
    def __init__(self, images: torch.Tensor, targets: np.ndarray) -> None:
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return dict(image=self.images[i], target=torch.tensor(int(self.targets[i])), index=torch.tensor(i))


class _TinyJimt(pl.LightningDataModule):
    """JIMT-1-shaped stand-in: dead patches carry a bright blob and high mean PI."""

    class_names = ["live", "dead"]
    num_classes = 2

    def __init__(self, n: int = 48, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.targets = np.tile([0, 1], n // 2)
        images = rng.integers(60, 120, size=(n, 1, SIZE, SIZE), dtype=np.uint8)
        for i, t in enumerate(self.targets):
            if t == 1 or i % 7 == 0:  # a few live patches look dead: misclassified examples
                y, x = rng.integers(4, SIZE - 12, 2)
                images[i, :, y : y + 8, x : x + 8] = 250
        self.images = torch.from_numpy(images)
        self.table = pd.DataFrame(
            dict(
                frame_id=[f"frame{i // 4:03d}" for i in range(n)],
                dataset="notreat",
                y=(np.arange(n) % 4) * 112,
                x=0,
                pi_mean=np.where(self.targets == 1, rng.normal(550, 100, n), rng.normal(200, 30, n)),
                target=self.targets,
            )
        )

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Patches(self.images, self.targets), batch_size=16)

    val_dataloader = train_dataloader = test_dataloader

    def split_table(self, stage: str) -> pd.DataFrame:
        return self.table

    def pi_thresholds(self) -> dict[str, float]:
        return {"live <": 258.97, "dead >": 396.89}


def _model() -> LiveDeadClassifier:
    torch.manual_seed(0)
    return LiveDeadClassifier(
        backbone=dict(name="resnet18", num_classes=2),
        optimizer=dict(_target_="torch.optim.Adam", _partial_=True, lr=1e-3),
        input_size=SIZE,
        class_names=["live", "dead"],
    )


def _trainer(tmp_path, callbacks=()) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=list(callbacks),
    )


def test_callback_report_matches_logged_test_metrics(tmp_path):
    dm, model = _TinyJimt(), _model()
    callback = EvalReport(output_dir=str(tmp_path / "run"))
    trainer = _trainer(tmp_path, [callback])
    trainer.fit(model, datamodule=dm)
    logged = trainer.test(model, datamodule=dm, verbose=False)[0]
    out = tmp_path / "run" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bal_acc"] == pytest.approx(logged["test/bal_acc"], abs=1e-6)
    assert metrics["acc"] == pytest.approx(logged["test/acc"], abs=1e-6)
    assert metrics["auroc"] == pytest.approx(logged["test/auroc"], abs=1e-5)
    assert metrics["bal_acc_ci"]["lower"] <= metrics["bal_acc_ci"]["upper"]
    assert set(metrics["files"]) >= FIGURES
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 48
    assert {"frame_id", "y", "x", "pi_mean", "truth", "predicted", "p_live", "p_dead"} <= set(preds.columns)
    np.testing.assert_allclose(preds[["p_live", "p_dead"]].sum(axis=1), 1.0, atol=1e-5)
    assert pd.read_csv(out / "metrics.csv").loc[0, "bal_acc"] == pytest.approx(metrics["bal_acc"])
    # A second test pass never overwrites the first report.
    trainer.test(model, datamodule=dm, verbose=False)
    assert (tmp_path / "run" / "eval_1" / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_report_without_test_outputs_runs_predictions(tmp_path):
    dm, model = _TinyJimt(n=20), _model()
    metrics = write_report(model, dm, tmp_path / "eval", tsne_max_points=10)
    assert metrics["n"] == 20
    assert "pearson_r" in metrics and -1 <= metrics["pearson_r"] <= 1
    assert (tmp_path / "eval" / "tsne.png").is_file()


def test_report_rejects_mismatched_split_table(tmp_path):
    dm, model = _TinyJimt(n=20), _model()
    dm.table = dm.table.iloc[:10]
    with pytest.raises(ReportError, match="outside the split table"):
        write_report(model, dm, tmp_path / "eval")
    dm = _TinyJimt(n=20)
    dm.table = dm.table.assign(target=1 - dm.table["target"])
    with pytest.raises(ReportError, match="disagree"):
        write_report(model, dm, tmp_path / "eval2")


def test_gradcam_selection_picks_confident_and_wrong():
    table = pd.DataFrame(
        dict(target=[0, 0, 0, 1, 1], pred=[0, 0, 1, 1, 0], p_a=[0.9, 0.6, 0.2, 0.1, 0.7], p_b=[0.1, 0.4, 0.8, 0.9, 0.3])
    )
    table["correct"] = table["target"] == table["pred"]
    sel = gradcam_selection(table, ["a", "b"], per_class=1)
    assert sel == {"confident": [[0], [3]], "misclassified": [[2], [4]]}
