"""Output writers for predict: every file atomic and under a fresh name (never overwrite)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stainfree.utils.atomic import atomic_path, atomic_write_text, unique_path


def write_csv(path: str | Path, table: pd.DataFrame) -> str:
    """Write ``table`` to ``path`` (or ``name_1.csv``... if taken); returns the path written."""
    target = unique_path(path)
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    return str(target)


def write_json(path: str | Path, payload: dict[str, Any]) -> str:
    """Strict JSON (NaN/inf -> null, numpy scalars -> numbers) under a fresh name."""
    target = unique_path(path)
    atomic_write_text(target, json.dumps(_clean(payload), indent=2, allow_nan=False) + "\n")
    return str(target)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
