"""Reading microscopy images (PNG, JPG, 8/16-bit TIFF, grey or RGB) with errors a user can act on."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stainfree.utils.errors import MissingPathError, UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class ImageReadError(UserError):
    """An image file could not be read; the message names the file and what to do."""


def _checked_path(path: str | os.PathLike, named_by: str) -> Path:
    """``path`` as a Path when it is an existing file of a supported type; else one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; check the path or {named_by}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageReadError(f"{path}: unsupported image type '{path.suffix}'; convert it to PNG, JPG or TIFF")
    return path


def read_image(path: str | os.PathLike, grey: bool = True) -> np.ndarray:
    """Read ``path`` keeping its bit depth (uint8 or uint16); RGB(A) is averaged to grey if ``grey``.

    Transmitted-light images are often saved as RGB with identical channels; averaging keeps
    the information either way.
    """
    path = _checked_path(path, "the manifest that lists it")
    if path.suffix.lower() in (".tif", ".tiff"):
        _check_single_plane(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None and path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            image = tifffile.imread(str(path))
        except Exception:  # noqa: BLE001 - any failure means the same thing to the user
            image = None
    if image is None or image.size == 0:
        raise ImageReadError(
            f"{path}: the file is empty, truncated or not an image; re-export it or remove it"
        )
    if image.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer):
            image = _to_uint16(image)
        else:
            raise ImageReadError(f"{path}: pixel type {image.dtype} is not supported; save as 8/16-bit")
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):  # averaging e.g. BF + fluorescence planes would be silent garbage
            raise ImageReadError(f"{path}: has {image.shape[2]} channels (shape {image.shape}); stainfree reads grey, "
                                 "RGB or RGBA images: save the transmitted-light plane as its own file")
        if image.shape[2] == 4:
            image = image[:, :, :3]
        if grey:
            image = image.mean(axis=2).round().astype(image.dtype)
    elif image.ndim != 2:
        raise ImageReadError(f"{path}: expected a 2-D image, got shape {image.shape}; save one plane per file")
    return np.ascontiguousarray(image)


def _check_single_plane(path: Path) -> None:
    """A multi-page or multi-channel TIFF is not one grey/RGB picture: cv2 would silently decode its
    first page (or misread its samples), so it is refused unless a channel is chosen."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            shape = tuple(d for d in tif.series[0].shape if d != 1)
    except Exception:  # noqa: BLE001 - unreadable files get read_image's own error below
        return
    if len(shape) > 3 or (len(shape) == 3 and shape[-1] not in (3, 4)):
        raise ImageReadError(f"{path}: a stack of shape {shape}, not one grey or RGB plane; save the "
                             "transmitted-light plane as its own file (training: or set data.channel)")


def read_channel(path: str | os.PathLike, channel: int) -> np.ndarray:
    """One plane of ``path``: page/channel ``channel`` of a multi-page or OME TIFF (first axis of its
    stack), or colour channel ``channel`` (R=0, G=1, B=2) of an RGB image. Bit depth is kept.
    """
    path = Path(path)
    image = _read_stack(path) if path.suffix.lower() in (".tif", ".tiff") else read_image(path, grey=False)
    if image.ndim == 2:
        planes, what = image[None], "plane"
    elif path.suffix.lower() in (".tif", ".tiff") and image.ndim == 3 and image.shape[-1] not in (3, 4):
        planes, what = image, "page"
    else:
        planes, what = np.moveaxis(image[..., :3] if image.shape[-1] == 4 else image, -1, 0), "colour channel"
        if path.suffix.lower() not in (".tif", ".tiff"):
            planes = planes[::-1]  # cv2 decodes BGR; channel 0 means red
    if not 0 <= int(channel) < len(planes):
        raise ImageReadError(f"{path}: has {len(planes)} {what}(s), so channel {channel} does not exist; "
                             f"use a channel index 0..{len(planes) - 1}")
    return np.ascontiguousarray(planes[int(channel)])


def _read_stack(path: Path) -> np.ndarray:
    """All pages of a TIFF as [pages, H, W] (or H x W (x samples) for a single page), bit depth kept."""
    import tifffile

    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; check the path or the table that lists it")
    try:
        image = np.squeeze(tifffile.imread(str(path)))
    except Exception:  # noqa: BLE001 - any failure means the same thing to the user
        raise ImageReadError(f"{path}: the file is empty, truncated or not a TIFF; re-export it or remove it") from None
    if image.dtype not in (np.uint8, np.uint16):
        image = _to_uint16(image)
    if image.ndim > 3:
        raise ImageReadError(f"{path}: a {image.ndim}-D stack {image.shape}; save one [pages, H, W] stack per field")
    return image


def _to_uint16(image: np.ndarray) -> np.ndarray:
    """Map any other numeric image linearly onto the uint16 range (used for float/int32 TIFFs)."""
    image = image.astype(np.float64)
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    return ((image - lo) * scale).round().astype(np.uint16)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursive, sorted) so runs are reproducible."""
    folder = Path(folder)
    if not folder.exists():
        raise MissingPathError(f"{folder}: folder not found; check the path you passed")
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image from its header only, so importers can check boxes cheaply.

    Pillow reads PNG/JPG/TIFF headers without decoding pixels; TIFFs it cannot parse go through
    tifffile's page tags, and anything else is decoded once with ``read_image`` (same errors).
    """
    path = _checked_path(path, "the annotation that names it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # huge stitched fields trip Pillow's bomb warning
            with Image.open(path) as img:
                width, height = img.size
        if width > 0 and height > 0:
            return int(height), int(width)
    except Exception:  # noqa: BLE001 - fall through to the readers that know more formats
        pass
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                page = tif.pages[0]
                return int(page.imagelength), int(page.imagewidth)
        except Exception:  # noqa: BLE001
            pass
    image = read_image(path, grey=True)
    return int(image.shape[0]), int(image.shape[1])
