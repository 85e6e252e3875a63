"""data.augment_on=gpu: the device path draws the same 8 symmetries as the CPU path, with the same
pixels per symmetry, from the same sampler; checked on the CPU (the device code is device-agnostic)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from scipy.stats import chisquare

from stainfree.data.celldeath.transforms import TLMAugment
from stainfree.data.dihedral import N_SYMMETRIES, dihedral, dihedral_batch, dihedral_image
from stainfree.data.jimt.datamodule import JimtDataModule
from stainfree.data.transforms import BatchDihedralAugment, DihedralAugment
from stainfree.utils.errors import UserError

# an image with no symmetry of its own: its 8 transforms are 8 different images
PROBE = np.arange(25, dtype=np.uint8).reshape(5, 5)


def _reference(image: np.ndarray, k: int) -> np.ndarray:
    """The convention in numpy terms: k % 4 quarter turns (np.rot90), then a left-right flip if k >= 4."""
    out = np.rot90(image, k % 4)
    return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)


def _id_of(image: np.ndarray) -> int:
    return next(k for k in range(N_SYMMETRIES) if np.array_equal(image, _reference(PROBE, k)))


def test_each_id_is_one_distinct_symmetry_with_the_reference_pixels() -> None:
    outs = [dihedral_image(PROBE, k) for k in range(N_SYMMETRIES)]
    for k, out in enumerate(outs):
        np.testing.assert_array_equal(out, _reference(PROBE, k))
        assert out.flags["C_CONTIGUOUS"] and out.dtype == np.uint8
    assert len({o.tobytes() for o in outs}) == N_SYMMETRIES
    with pytest.raises(ValueError, match="outside 0..7"):
        dihedral(torch.from_numpy(PROBE), 8)


def test_batch_op_gives_each_sample_the_cpu_pixels_of_its_own_id() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 1, 6, 6), dtype=np.uint8)
    ids = torch.from_numpy(rng.integers(0, N_SYMMETRIES, size=32))
    out = dihedral_batch(torch.from_numpy(images), ids)
    assert out.dtype == torch.uint8 and out.shape == (32, 1, 6, 6)
    for i, k in enumerate(ids.tolist()):
        np.testing.assert_array_equal(out[i, 0].numpy(), dihedral_image(images[i, 0], k))
    with pytest.raises(ValueError, match="square"):
        dihedral_batch(torch.zeros(2, 1, 4, 5, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))


def test_both_paths_draw_the_eight_symmetries_equally_often() -> None:
    """Uniform over the 8 (chi-square) on both paths, and the two frequency tables agree."""
    n = 4000
    cpu_aug = DihedralAugment()
    cpu = np.bincount([_id_of(cpu_aug(PROBE, s)) for s in range(n)], minlength=N_SYMMETRIES)
    batch_aug = BatchDihedralAugment(seed=3)
    probe = torch.from_numpy(PROBE)[None, None].expand(100, 1, 5, 5).contiguous()
    device = np.zeros(N_SYMMETRIES, dtype=int)
    for b in range(n // 100):
        for img in batch_aug(probe, epoch=b % 5, batch_index=b)[:, 0].numpy():
            device[_id_of(img)] += 1
    for counts in (cpu, device):
        assert counts.sum() == n and chisquare(counts).pvalue > 1e-3, counts
    assert chisquare(device, cpu * device.sum() / cpu.sum()).pvalue > 1e-3, (cpu, device)


def test_batch_draw_is_reproducible_and_varies_by_epoch_batch_and_rank() -> None:
    aug = BatchDihedralAugment(seed=7)
    images = torch.from_numpy(PROBE)[None, None].expand(64, 1, 5, 5).contiguous()
    first = aug(images, 2, 5)
    assert torch.equal(first, aug(images, 2, 5))
    for other in (aug(images, 3, 5), aug(images, 2, 6), aug(images, 2, 5, rank=1),
                  BatchDihedralAugment(seed=8)(images, 2, 5)):
        assert not torch.equal(first, other)


def test_celldeath_refuses_to_move_what_has_no_device_version() -> None:
    assert TLMAugment().cpu_only_parts() and len(TLMAugment().cpu_only_parts()) == 2
    assert TLMAugment(p_affine=0, p_lighting=0).cpu_only_parts() == []
    assert TLMAugment(max_rotate=0, max_zoom=1.0, max_lighting=0).cpu_only_parts() == []
    # the dihedral part of the celldeath augmentation is the shared op
    only_d4 = TLMAugment(p_affine=0, p_lighting=0)
    assert {_id_of(only_d4(PROBE, s)) for s in range(200)} == set(range(N_SYMMETRIES))


# ----------------------------------------------------------------------------- the DataModule
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("device_aug")


def _dm(root: Path, **kw) -> JimtDataModule:
    args = dict(manifest=root / "syn" / "manifest.csv", dataset="notreat", cache_dir=root / "cache",
                synthetic={"frames_notreat": 10, "frames_doxo": 0, "seed": 2, "examples_per_class": 4},
                stride=224, input_size=32, batch_size=8, num_workers=0, seed=11)
    args.update(kw)
    d = JimtDataModule(**args)
    d.prepare_data()
    d.setup("fit")
    return d


def test_unknown_augment_place_is_one_clear_error(root: Path) -> None:
    with pytest.raises(UserError, match=r"data.augment_on='tpu'.*\['cpu', 'gpu', 'auto'\]"):
        JimtDataModule(manifest=root / "m.csv", augment_on="tpu")


def test_gpu_loader_yields_raw_patches_from_the_same_weighted_draw(root: Path) -> None:
    cpu, gpu = _dm(root), _dm(root, augment_on="gpu")
    cpu_loader, gpu_loader = cpu.train_dataloader(), gpu.train_dataloader()
    assert torch.equal(cpu_loader.sampler.weights, gpu_loader.sampler.weights)
    assert list(cpu_loader.sampler) == list(gpu_loader.sampler)
    assert cpu._batch_augment is None and gpu._batch_augment is not None
    raw = gpu_loader.dataset
    for a, b in zip(cpu_loader, gpu_loader):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["target"], b["target"])
        for i, img in zip(b["index"].tolist(), b["image"][:, 0]):
            assert np.array_equal(img.numpy(), raw.image(i))  # unaugmented on the gpu path
    assert cpu_loader.dataset.augment is not None  # the CPU path still augments in the workers
    assert not cpu_loader.pin_memory and not gpu_loader.pin_memory  # pinned only for a CUDA trainer


def test_auto_follows_the_trainer_device(root: Path) -> None:
    d = _dm(root, augment_on="auto")
    assert not d.augments_on_device()  # no trainer: the CPU
    d.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    assert d.augments_on_device()
    assert not _dm(root, augment_on="gpu", augment=False).augments_on_device()


def test_hook_augments_training_batches_only(root: Path) -> None:
    d = _dm(root, augment_on="gpu")
    batch = next(iter(d.train_dataloader()))
    trainer = SimpleNamespace(training=False, current_epoch=0, global_rank=0,
                              strategy=SimpleNamespace(root_device=torch.device("cpu")))
    d.trainer = trainer
    assert d.on_after_batch_transfer(batch, 0) is batch  # validation/test/predict: untouched
    trainer.training = True
    first = d.on_after_batch_transfer(batch, 0)["image"]
    second = d.on_after_batch_transfer(batch, 0)["image"]  # the next batch index: another draw
    assert not torch.equal(first, second)
    for raw, aug in zip(batch["image"][:, 0].numpy(), first[:, 0].numpy()):
        assert any(np.array_equal(aug, dihedral_image(raw, k)) for k in range(N_SYMMETRIES))
    trainer.current_epoch = 1  # a new epoch restarts the batch count, with its own seed
    assert not torch.equal(first, d.on_after_batch_transfer(batch, 0)["image"])


class _Recorder(pl.LightningModule):
    """The smallest model: records which images each stage saw."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 2)
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch["image"].clone())
        return self.layer(batch["image"].float().mean((1, 2, 3))[:, None]).sum()

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch["image"].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_calls_the_hook_in_training_and_not_in_validation(root: Path, tmp_path: Path) -> None:
    d = _dm(root, augment_on="gpu")
    model = _Recorder()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=2,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=d)
    raw = d.train_dataloader().dataset
    d.set_epoch(0)  # the epoch that was trained (the trainer has moved past it)
    draws = list(d._train_sampler)
    changed = 0
    for b, images in enumerate(model.seen["train"]):
        for j, img in enumerate(images[:, 0].numpy()):
            source = raw.image(draws[b * 8 + j][0])
            assert any(np.array_equal(img, dihedral_image(source, k)) for k in range(N_SYMMETRIES))
            changed += not np.array_equal(img, source)
    assert changed > 0  # augmented (an unchanged patch is the identity draw or a symmetric patch)
    val = d.val_dataloader().dataset
    first_val = model.seen["val"][0][:, 0].numpy()
    assert all(np.array_equal(img, val.image(i)) for i, img in enumerate(first_val))


# ----------------------------------------------------------------------------- compile x checkpoints
def _fit_and_save(model: pl.LightningModule, d: JimtDataModule, path: Path) -> Path:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=path.parent)
    trainer.fit(model, datamodule=d)
    trainer.save_checkpoint(path)
    return path


@pytest.mark.slow  # torch.compile builds C++ kernels on the CPU: tens of seconds
def test_compiled_and_plain_checkpoints_load_into_each_other(root: Path, tmp_path: Path, compose_cfg) -> None:
    import hydra

    from stainfree.models.classifier import LiveDeadClassifier

    d = _dm(root, augment_on="gpu")
    probe = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    for compiled in (True, False):
        cfg = compose_cfg(["experiment=demo", "model.input_size=32", f"model.compile={compiled}"])
        model: LiveDeadClassifier = hydra.utils.instantiate(cfg.model)
        path = _fit_and_save(model, d, tmp_path / f"compiled_{compiled}.ckpt")
        assert (model._features_fn != model.net.forward_features) == compiled
        model.eval()
        with torch.no_grad():
            expected = model(probe)
        plain = LiveDeadClassifier.from_checkpoint(path)  # inference: never compiled
        assert plain._features_fn == plain.net.forward_features
        other = LiveDeadClassifier.load_from_checkpoint(path, map_location="cpu", compile=not compiled)
        other.setup("fit")  # compiles when asked, after the weights are in
        other.eval()
        with torch.no_grad():
            torch.testing.assert_close(plain(probe), expected, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(other(probe), expected, rtol=1e-4, atol=1e-4)
