"""A logger that prints once under DDP (rank zero only), so multi-GPU logs stay readable."""
from __future__ import annotations

import logging

from pytorch_lightning.utilities import rank_zero_only


def get_logger(name: str = __name__) -> logging.Logger:
    """Logger whose methods are no-ops on every rank but zero."""
    logger = logging.getLogger(name)
    for level in ("debug", "info", "warning", "error", "exception", "critical"):
        setattr(logger, level, rank_zero_only(getattr(logger, level)))
    return logger
