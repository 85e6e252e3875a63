"""Code a hostile checkpoint names (issue 8 case 3): if a test ever finds its marker file, code ran."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MARKER_ENV = "STAINFREE_TEST_PLANTED_MARKER"


def build_and_mark(cls: type, kwargs: dict[str, Any]) -> Any:
    """A Lightning ``_instantiator``: writes the marker file, then builds the module as asked."""
    Path(os.environ[MARKER_ENV]).write_text("planted code ran\n")
    return cls(**kwargs)
