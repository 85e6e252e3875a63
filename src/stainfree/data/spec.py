"""PreprocessSpec: the typed record of how a source image becomes model inputs (stored in checkpoints).

Training (the crop store) and predict (inference/tiling.py) both read pixels only through
``stainfree.data.pixels`` with one of these, so a checkpoint sees at predict time exactly the pixels
it was trained on. ``to_dict()`` is plain python (``torch.load(weights_only=True)`` safe) with
``"schema": 2``; ``from_dict()`` validates it and converts the legacy dicts of schema 1 (the JIMT-1
and celldeath DataModules before the data contract), so old checkpoints still predict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from stainfree.utils.errors import UserError

SCHEMA = 2
EIGHT_BIT_METHODS = ("percentile", "minmax", "fixed")
REGION_SHAPES = ("squish", "crop", "square")
BORDERS = ("reflect", "constant")
LAYOUTS = ("windows", "grid", "whole")


class SpecError(UserError):
    """A preprocessing setting (or a checkpoint's stored spec) is invalid; the message names it."""


@dataclass(frozen=True)
class EightBit:
    """Grey -> uint8: non-uint8 images are always mapped by ``method``; uint8 passes unless ``stretch_8bit``.

    ``percentile`` maps the image's ``low``/``high`` percentiles to 0/255, ``minmax`` its min/max,
    ``fixed`` the raw values ``lo``/``hi`` (same mapping for every image). Values are clipped to
    [0, 255], then rounded with ``np.round`` (the one rounding rule).
    """

    method: str = "percentile"
    low: float = 0.5
    high: float = 99.5
    lo: float | None = None
    hi: float | None = None
    stretch_8bit: bool = False

    def __post_init__(self) -> None:
        if self.method not in EIGHT_BIT_METHODS:
            raise SpecError(f"to_8bit.method='{self.method}' is not one of {EIGHT_BIT_METHODS}")
        if self.method == "percentile" and not 0.0 <= float(self.low) < float(self.high) <= 100.0:
            raise SpecError(f"to_8bit percentiles need 0 <= low < high <= 100, got low={self.low}, high={self.high}")
        if self.method == "fixed":
            if self.lo is None or self.hi is None:
                raise SpecError("to_8bit.method=fixed needs to_8bit.lo and to_8bit.hi (raw grey values mapped to 0/255)")
            if float(self.hi) <= float(self.lo):
                raise SpecError(f"to_8bit.method=fixed needs hi > lo, got lo={self.lo}, hi={self.hi}")


@dataclass(frozen=True)
class Region:
    """How a region (box) of the 8-bit image becomes an S x S input.

    ``margin``: extra context per side as a fraction of the box side; ``shape``: ``squish`` (resize the
    box), ``crop`` (centre square of the box) or ``square`` (grow the box to a square around its
    centre); parts outside the image are mirrored (``reflect`` = BORDER_REFLECT_101) or zero (``constant``).
    """

    margin: float = 0.0
    shape: str = "squish"
    border: str = "reflect"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.margin) <= 10.0:
            raise SpecError(f"region.margin={self.margin} must be between 0 and 10 (a fraction of the box side)")
        if self.shape not in REGION_SHAPES:
            raise SpecError(f"region.shape='{self.shape}' is not one of {REGION_SHAPES}")
        if self.border not in BORDERS:
            raise SpecError(f"region.border='{self.border}' is not one of {BORDERS}")


@dataclass(frozen=True)
class Layout:
    """How predict cuts a WHOLE image when no regions are given: sliding ``windows`` (side ``window``,
    after margin, step ``stride``), a ``grid`` of ``n_tiles`` tiles, or the ``whole`` image."""

    kind: str = "whole"
    window: int | None = None
    stride: int | None = None
    n_tiles: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise SpecError(f"layout.kind='{self.kind}' is not one of {LAYOUTS}")
        if self.kind == "windows":
            if self.window is None or int(self.window) < 1:
                raise SpecError(f"layout windows need a positive window side, got window={self.window}")
            if self.stride is not None and int(self.stride) < 1:
                raise SpecError(f"layout windows need a positive stride, got stride={self.stride}")
        if self.kind == "grid":
            from stainfree.data.celldeath.tiling import GRIDS

            if self.n_tiles not in GRIDS:
                raise SpecError(f"layout grid n_tiles={self.n_tiles} is not one of {sorted(GRIDS)}")


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that decides model-input pixels, plus what predict needs to lay out a whole image."""

    input_size: int
    channel: str | int = "mean"
    to_8bit: EightBit = field(default_factory=EightBit)
    region: Region = field(default_factory=Region)
    layout: Layout = field(default_factory=Layout)
    source_scale: float | None = None
    empty_filter: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 1:
            raise SpecError(f"input_size={self.input_size!r} must be a positive integer (pixels of the model input)")
        if self.channel != "mean" and (isinstance(self.channel, bool) or not isinstance(self.channel, int)
                                       or self.channel < 0):
            raise SpecError(f"channel={self.channel!r} must be 'mean' or a channel/page index >= 0")
        if self.source_scale is not None and not float(self.source_scale) > 0:
            raise SpecError(f"source_scale={self.source_scale} must be positive")

    def pixel_dict(self) -> dict[str, Any]:
        """The parts that decide crop pixels (the crop store's key): not layout/scale/empty filter."""
        return {"input_size": self.input_size, "channel": self.channel, "to_8bit": asdict(self.to_8bit),
                "region": asdict(self.region)}

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form stored in checkpoints (``checkpoint["stainfree"]["preprocess"]``)."""
        return {"schema": SCHEMA, **self.pixel_dict(), "layout": asdict(self.layout),
                "source_scale": None if self.source_scale is None else float(self.source_scale),
                "empty_filter": None if self.empty_filter is None else dict(self.empty_filter)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessSpec":
        """Validate a stored spec (schema 2) or convert a legacy one; one-line SpecError otherwise."""
        if not isinstance(data, Mapping):
            raise SpecError(f"preprocess settings must be a mapping, got {type(data).__name__}")
        if "schema" not in data:
            return _from_legacy(data)
        schema = data["schema"]
        if schema != SCHEMA:
            newer = isinstance(schema, int) and schema > SCHEMA
            raise SpecError(f"preprocess schema {schema!r} is not {SCHEMA}: "
                            + ("the checkpoint was written by a newer stainfree; upgrade stainfree to use it"
                               if newer else "the checkpoint's preprocess settings are corrupt"))
        body = {k: v for k, v in data.items() if k != "schema"}
        _refuse_unknown(body, cls, "preprocess")
        if "input_size" not in body:
            raise SpecError("preprocess settings lack input_size; the checkpoint's preprocess entry is incomplete")
        nested = {"to_8bit": EightBit, "region": Region, "layout": Layout}
        kwargs = dict(body)
        for key, kind in nested.items():
            if kwargs.get(key) is not None:
                _refuse_unknown(kwargs[key], kind, f"preprocess.{key}")
                kwargs[key] = kind(**kwargs[key])
            else:
                kwargs.pop(key, None)
        return cls(**kwargs)


def _refuse_unknown(values: Any, kind: type, where: str) -> None:
    if not isinstance(values, Mapping):
        raise SpecError(f"{where} must be a mapping, got {type(values).__name__}")
    allowed = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise SpecError(f"{where} has unknown key(s) {unknown} (allowed: {sorted(allowed)}); "
                        "the checkpoint was written by a newer or incompatible stainfree")


def _from_legacy(data: Mapping[str, Any]) -> PreprocessSpec:
    """Schema-1 dicts written by JimtDataModule / CellDeathDataModule before the data contract."""
    if data.get("study") == "celldeath" or data.get("n_tiles"):
        eight = dict(data.get("to_8bit") or {})
        n_tiles = int(data["n_tiles"])
        return PreprocessSpec(
            input_size=int(data["input_size"]),
            to_8bit=EightBit(low=float(eight.get("low_pct", 0.5)), high=float(eight.get("high_pct", 99.5)),
                             stretch_8bit=bool(eight.get("stretch_uint8", False))),
            region=Region(shape=str(data.get("resize") or "squish")),
            layout=Layout(kind="grid", n_tiles=n_tiles))
    if data.get("window"):
        window = int(data["window"])
        bf = dict(data.get("bf_to8bit") or {})
        empty = dict(data.get("empty_filter") or {"method": "none"})
        if empty.get("method") == "svm" and not empty.get("svm_path") and data.get("svm_path"):
            empty["svm_path"] = data["svm_path"]
        return PreprocessSpec(
            input_size=int(data.get("input_size") or window),
            to_8bit=EightBit(method=bf.get("method", "percentile"), low=float(bf.get("low", 0.5)),
                             high=float(bf.get("high", 99.5)), lo=bf.get("lo"), hi=bf.get("hi"), stretch_8bit=True),
            layout=Layout(kind="windows", window=window, stride=int(data.get("stride") or window)),
            source_scale=float(window), empty_filter=empty)
    raise SpecError(f"checkpoint preprocess settings {sorted(data)} have no schema and name neither 'n_tiles' "
                    "(celldeath grid) nor 'window' (JIMT-1 windows); the checkpoint was written by an "
                    "incompatible version")
