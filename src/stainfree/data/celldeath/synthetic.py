"""Synthetic transmitted-light fields for the celldeath study: several cell lines, CPT vs DMSO.

Why: the real public set has one cell line and confounds treatment with replicate, so leave-one-
cell-line-out and all-vs-all need multi-line data with known structure. Each line has its own cell
size, elongation, contour irregularity, density and clumping; CPT makes cells slightly rounder and
smaller with a brighter halo and a more granular interior (strength grows with time); each
replicate experiment has its own brightness, contrast and illumination gradient, shared by all
lines and treatments. Files are 8-bit PNGs named `<LINE>_<CPT|DMSO>_<t>h_<idx>_N<rep>.png`, which
the default name parser reads. Deterministic: the same arguments give byte-identical files.

    python -m stainfree.data.celldeath.synthetic --out data/synthetic_tlm --lines PC3,MCF7,U2OS \
        --images-per-group 4 --seed 0
"""
from __future__ import annotations

import argparse
import json
import os
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stainfree.utils.atomic import atomic_dir

MANIFEST = "synthetic_tlm.json"
TREATMENTS = ("DMSO", "CPT")


@dataclass(frozen=True)
class LineStyle:
    """Morphology of one cell line (pixels at 1280x960)."""

    radius: float
    aspect: float
    irregularity: float
    cells: int
    clumping: float
    rim: float
    granularity: float


KNOWN_STYLES: dict[str, LineStyle] = {
    "PC3": LineStyle(radius=15, aspect=1.5, irregularity=0.20, cells=260, clumping=0.2, rim=26, granularity=6),
    "MCF7": LineStyle(radius=13, aspect=1.2, irregularity=0.10, cells=340, clumping=0.7, rim=22, granularity=5),
    "U2OS": LineStyle(radius=20, aspect=2.0, irregularity=0.28, cells=150, clumping=0.1, rim=30, granularity=7),
    "T47D": LineStyle(radius=12, aspect=1.3, irregularity=0.12, cells=380, clumping=0.8, rim=20, granularity=5),
    "H9": LineStyle(radius=9, aspect=1.1, irregularity=0.06, cells=600, clumping=0.9, rim=18, granularity=4),
}


def _seed(*parts: object) -> list[int]:
    """Stable seed from mixed parts (python's hash() is salted per process, crc32 is not)."""
    return [zlib.crc32(str(p).encode()) for p in parts]


def line_style(name: str) -> LineStyle:
    """Known lines have fixed styles; any other name gets a style drawn from its own name."""
    if name in KNOWN_STYLES:
        return KNOWN_STYLES[name]
    rng = np.random.default_rng(_seed("style", name))
    return LineStyle(radius=float(rng.uniform(9, 22)), aspect=float(rng.uniform(1.05, 2.1)),
                     irregularity=float(rng.uniform(0.05, 0.3)), cells=int(rng.integers(140, 500)),
                     clumping=float(rng.uniform(0, 0.9)), rim=float(rng.uniform(18, 30)),
                     granularity=float(rng.uniform(4, 7)))


def _centres(rng: np.random.Generator, n: int, clumping: float, h: int, w: int) -> np.ndarray:
    """Cell centres [n, 2] (y, x): a fraction ``clumping`` gathered around a few colony centres."""
    n_clumped = int(round(n * clumping))
    free = rng.uniform((0, 0), (h, w), size=(n - n_clumped, 2))
    colonies = rng.uniform((0, 0), (h, w), size=(max(1, n // 40), 2))
    around = colonies[rng.integers(len(colonies), size=n_clumped)] + rng.normal(0, 0.06 * min(h, w), (n_clumped, 2))
    return np.concatenate([free, around]) % (h, w)


def render_field(style: LineStyle, effect: float, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells of one field as additive intensity and a cell mask (float32 [h, w]); all cells stamped at once."""
    scale = min(h / 960, w / 1280)
    n = max(1, int(round(style.cells * scale**2 * rng.uniform(0.85, 1.15))))
    radius = style.radius * scale * (1 - 0.06 * effect) * rng.lognormal(0, 0.15, n)
    aspect = 1 + (style.aspect - 1) * (1 - 0.4 * effect) * rng.uniform(0.7, 1.3, n)
    irregular = style.irregularity * (1 - 0.45 * effect)
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    theta = rng.uniform(0, np.pi, n)
    harm = rng.normal(0, 1, (n, 4))
    half = int(np.ceil(1.4 * a.max())) + 2
    d = np.arange(-half, half + 1, dtype=np.float32)
    dy, dx = d[None, :, None], d[None, None, :]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u = (dx * cos + dy * sin) / a[:, None, None]
    v = (-dx * sin + dy * cos) / b[:, None, None]
    phi = np.arctan2(v, u)
    contour = 1 + irregular * 0.5 * (harm[:, 0, None, None] * np.cos(2 * phi + harm[:, 1, None, None])
                                    + harm[:, 2, None, None] * np.cos(3 * phi + harm[:, 3, None, None]))
    rho = np.sqrt(u * u + v * v) / contour
    inside = 1 / (1 + np.exp(-(1 - rho) / 0.06))
    rim_amp = style.rim * (1 + 0.45 * effect)
    stamp = (rim_amp * np.exp(-(((rho - 1.1) / 0.08) ** 2))
             - 0.8 * rim_amp * np.exp(-(((rho - 0.95) / 0.05) ** 2))
             - 10 * inside - 14 * np.exp(-((rho / 0.4) ** 2)))
    centres = _centres(rng, n, style.clumping, h, w).round().astype(np.int64)
    ys, xs = centres[:, 0, None, None] + dy.astype(np.int64), centres[:, 1, None, None] + dx.astype(np.int64)
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    flat = (ys * w + xs)[ok]
    cells = np.bincount(flat, weights=stamp[ok], minlength=h * w).reshape(h, w)
    mask = np.minimum(np.bincount(flat, weights=inside[ok], minlength=h * w).reshape(h, w), 1.0)
    return cells.astype(np.float32), mask.astype(np.float32)


def _replicate_optics(rep: int, seed: int, h: int, w: int) -> tuple[float, float, np.ndarray]:
    """(brightness offset, contrast gain, illumination field) of one experiment, shared by all its images."""
    rng = np.random.default_rng(_seed("replicate", seed, rep))
    offset, gain = float(rng.normal(0, 8)), float(rng.uniform(0.85, 1.15))
    gy, gx = rng.normal(0, 10, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return offset, gain, (gy * (yy / h - 0.5) + gx * (xx / w - 0.5)).astype(np.float32)


def time_effect(treatment: str, time: int, strength: float) -> float:
    """Treatment effect size: 0 for DMSO; for CPT it grows with time (0.3 at 0 h, full from 1 h on)."""
    if treatment == "DMSO":
        return 0.0
    return strength * (0.3 if time <= 0 else min(1.0, 0.75 + 0.25 * time))


def make_image(line: str, treatment: str, time: int, replicate: int, index: int, seed: int = 0,
               size: tuple[int, int] = (1280, 960), strength: float = 1.0) -> np.ndarray:
    """One 8-bit grey field (height x width = size[1] x size[0])."""
    w, h = size
    rng = np.random.default_rng(_seed("image", seed, line, treatment, time, replicate, index))
    cells, mask = render_field(line_style(line), time_effect(treatment, time, strength), rng, h, w)
    effect = time_effect(treatment, time, strength)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    granularity = line_style(line).granularity * (1 + 0.7 * effect)
    offset, gain, light = _replicate_optics(replicate, seed, h, w)
    field = 128 + cells + granularity * mask * grain + light
    field = cv2.GaussianBlur(field, (0, 0), 0.7)
    field = (field - 128) * gain + 128 + offset + rng.normal(0, 3, (h, w)).astype(np.float32)
    return np.clip(field + 0.5, 0, 255).astype(np.uint8)


def file_name(line: str, treatment: str, time: int, index: int, replicate: int) -> str:
    """The tool's naming convention, read by the default parser."""
    return f"{line}_{treatment}_{time}h_{index:04d}_N{replicate}.png"


def generate(out: str | os.PathLike, lines: Sequence[str], images_per_group: int = 4, replicates: int = 3,
             time_points: Sequence[int] = (1,), seed: int = 0, size: tuple[int, int] = (1280, 960),
             strength: float = 1.0) -> Path:
    """Write the whole set to ``out`` (atomically: a temp folder renamed at the end); returns ``out``.

    Reuses ``out`` when it holds a set made with the same arguments; refuses to touch anything else.
    """
    lines = [str(x) for x in lines]
    for line in lines:
        if not re.fullmatch(r"[A-Za-z0-9\-]+", line):
            raise ValueError(f"cell line name '{line}' must be letters, digits or '-' (no '_': it separates tokens)")
    if images_per_group < 1 or replicates < 1 or not lines or not time_points:
        raise ValueError("need at least one line, time point, replicate and image per group")
    params = dict(lines=lines, images_per_group=int(images_per_group), replicates=int(replicates),
                  time_points=[int(t) for t in time_points], seed=int(seed), size=[int(s) for s in size],
                  strength=float(strength), styles={ln: asdict(line_style(ln)) for ln in lines}, version=1)
    out = Path(out)
    if out.exists():
        manifest = out / MANIFEST
        if manifest.is_file() and json.loads(manifest.read_text()) == params:
            return out
        raise FileExistsError(f"{out} already exists and is not a synthetic set made with these arguments; "
                              "choose another folder (data.root / --out) or delete it")
    with atomic_dir(out) as tmp:
        for line in lines:
            for treatment in TREATMENTS:
                for t in params["time_points"]:
                    for rep in range(1, replicates + 1):
                        for i in range(1, images_per_group + 1):
                            img = make_image(line, treatment, t, rep, i, seed, tuple(size), strength)
                            if not cv2.imwrite(str(tmp / file_name(line, treatment, t, i, rep)), img):
                                raise OSError(f"could not write a PNG into {tmp}; check disk space/permissions")
        (tmp / MANIFEST).write_text(json.dumps(params, indent=1))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="new folder to create")
    p.add_argument("--lines", default="PC3,MCF7,U2OS", help="comma-separated cell-line names")
    p.add_argument("--images-per-group", type=int, default=4, help="images per line x treatment x time x replicate")
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--time-points", default="1", help="comma-separated hours, e.g. 0,1,2,3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="1280x960", help="WIDTHxHEIGHT")
    p.add_argument("--strength", type=float, default=1.0, help="treatment effect size (0 = no effect)")
    a = p.parse_args(argv)
    m = re.fullmatch(r"(\d+)x(\d+)", a.size)
    if not m:
        p.error("--size must look like 1280x960")
    out = generate(a.out, [s for s in a.lines.split(",") if s], a.images_per_group, a.replicates,
                   [int(t) for t in a.time_points.split(",")], a.seed, (int(m.group(1)), int(m.group(2))), a.strength)
    print(f"wrote {len(list(out.glob('*.png')))} images to {out}")


if __name__ == "__main__":
    main()
