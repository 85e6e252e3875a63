"""Each importer route trains (fast_dev_run) with experiment=cells_from_boxes on the synthetic annotated set, then predicts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from stainfree.data.jimt.synthetic import generate_dataset
from stainfree.data.jimt.synthetic_export import ExportOptions, export_annotated

TINY = ["debug=fdr", "trainer=cpu", "data.num_workers=0", "data.batch_size=8", "model.input_size=32",
        "logger=csv"]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("boxes") / "set"
    generate_dataset(folder, frames_notreat=6, frames_doxo=6, seed=2, examples_per_class=2, verbose=False)
    return export_annotated(folder, ExportOptions(class_names=("Living Cell", "Dead Cell")), verbose=False)


@pytest.mark.parametrize("route", ["voc", "coco", "points_csv", "folders"])
def test_each_route_trains_and_predicts_with_classes_from_the_class_map(route, annotated, compose_cfg, tmp_path) -> None:
    from stainfree.tasks.train import train

    source = {"voc": ["data.annotations={a}/voc"], "coco": ["data=coco", "data.annotations={a}/coco.json"],
              "points_csv": ["data=points_csv", "data.csv={a}/points.csv", "data.point_size=64"],
              "folders": ["data=folders", "data.root={a}/folders"]}[route]
    overrides = ["experiment=cells_from_boxes", *[o.format(a=annotated) for o in source], *TINY,
                 "data.class_map={Living Cell: live, Dead Cell: dead}"]
    cfg = compose_cfg(overrides)
    assert cfg.data.source == route
    metrics, objects = train(cfg)
    assert 0.0 <= metrics["test/bal_acc"] <= 1.0
    assert objects["datamodule"].class_names == ["live", "dead"]
    # ... and the route's checkpoint predicts whole frames (issue 9: each route trains AND predicts)
    from stainfree.tasks.predict import predict

    ckpt = tmp_path / f"{route}.ckpt"
    objects["trainer"].save_checkpoint(ckpt)
    frames = tmp_path / "frames"
    frames.mkdir()
    for image in sorted((annotated / "images").iterdir())[:2]:
        shutil.copy(image, frames / image.name)
    summary = predict(ckpt, frames, tmp_path / "pred", device="cpu", progress=False, overlays=False)
    images = pd.read_csv(summary.files["images"])
    assert summary.n_ok == 2 and {"p(live)", "p(dead)"} <= set(pd.read_csv(summary.files["patches"]).columns)
    assert images["dead_fraction"].between(0, 1).all()
