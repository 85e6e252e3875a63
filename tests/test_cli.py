"""One error policy for every CLI: a user error is one line on stderr and exit status 2, before any
logger or W&B run starts; a bug keeps its traceback. The CLIs run in-process (as the scripts call them)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from stainfree.utils.errors import UserError

TRAIN, EVAL, PREDICT = ("stainfree.tasks.train", "train.py"), ("stainfree.tasks.evaluate", "eval.py"), \
    ("stainfree.tasks.predict", "predict.py")
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A foreign checkpoint, a text file named .ckpt and a folder of fields whose names carry no label."""
    torch.save({"state_dict": {}, "epoch": 3}, tmp_path / "foreign.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    (tmp_path / "fields").mkdir()
    cv2.imwrite(str(tmp_path / "fields" / "field_001.png"), np.full((96, 128), 90, np.uint8))
    return {"tmp": tmp_path, "foreign": tmp_path / "foreign.ckpt", "text": tmp_path / "text.ckpt",
            "fields": tmp_path / "fields", "missing": tmp_path / "missing"}


CASES = [
    # bad config value, unknown model (config group / timm name), no GPU, bad path, data that cannot be labelled
    (TRAIN, ["model.input_size=0"], "model.input_size=0 is invalid; use a whole number of pixels"),
    (TRAIN, ["model.optimizer.lr=-1"], "model.optimizer.lr=-1 is invalid; use a positive number"),
    (TRAIN, ["data.batch_size=-4"], "data.batch_size=-4 is invalid"),
    (TRAIN, ["model=nope"], "In 'train': Could not find 'model/nope'; choose one of: convnext_tiny, densenet121"),
    (TRAIN, ["model.nope=1"], "Could not override 'model.nope'. To append to your config use +model.nope=1"),
    (TRAIN, ["model.backbone.name=nope"], "unknown backbone 'nope': use a timm model name"),
    pytest.param(TRAIN, ["trainer=gpu"], "trainer.accelerator=gpu: no CUDA GPU is visible", marks=NO_GPU),
    (TRAIN, ["data=celldeath", "data.root={missing}"], "data.root={missing}: folder not found"),
    (TRAIN, ["data=celldeath", "data.root={fields}"], "1 file(s) under {fields} match no label token: field_001.png"),
    (TRAIN, ["ckpt_path={foreign}"], "{foreign}: not a stainfree checkpoint"),
    (EVAL, ["ckpt_path={missing}"], "ckpt_path={missing}: no such file"),
    (EVAL, ["ckpt_path={foreign}"], "{foreign}: not a stainfree checkpoint"),
    (EVAL, ["ckpt_path={text}"], "ckpt_path={text}: not a readable PyTorch checkpoint"),
    (EVAL, ["ckpt_path={foreign}", "model=nope"], "In 'eval': Could not find 'model/nope'"),
    (PREDICT, ["ckpt_path={missing}", "input={tmp}"], "ckpt_path={missing}: no such file"),
    (PREDICT, ["ckpt_path={foreign}", "input={tmp}"], "{foreign}: not a stainfree checkpoint"),
    (PREDICT, ["ckpt_path={foreign}"], "input is required: add input=<value>"),
]


@pytest.mark.parametrize("task,args,line", CASES)
def test_user_error_is_one_line_and_exit_2(task, args, line, inputs, cli) -> None:
    entry, prog = task
    tmp = inputs["tmp"]
    args = [a.format(**inputs) for a in args]
    code, _, err = cli(entry, prog, *args, f"paths.log_dir={tmp / 'logs'}", f"paths.data_dir={tmp / 'data'}")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err  # the error line is all there is on stderr
    assert err.startswith(f"{prog}: error: " + line.format(**inputs)), err
    assert "Traceback" not in err and "Error executing job" not in err
    # nothing was started: no W&B run, no checkpoint
    assert not list((tmp / "logs").rglob("wandb")) and not list((tmp / "logs").rglob("*.ckpt"))


def test_a_bug_keeps_its_traceback_and_a_wrapped_user_error_is_found(cli) -> None:
    def bug() -> None:
        raise KeyError("a programming error")

    with pytest.raises(KeyError, match="a programming error"):
        cli(bug, "train.py")

    def wrapped() -> None:  # Hydra's instantiate wraps what a constructor raised
        try:
            raise UserError("data.thing=3 is wrong; set data.thing=2")
        except UserError as exc:
            raise InstantiationException("Error in call to target 'x':\nUserError(...)") from exc

    code, _, err = cli(wrapped, "train.py")
    assert code == 2 and err == "train.py: error: data.thing=3 is wrong; set data.thing=2\n"
