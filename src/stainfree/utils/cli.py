"""Command-line conveniences shared by the entry points."""
from __future__ import annotations

import sys

MULTIRUN_FLAGS = ("-m", "--multirun")


def multirun_flag_first(argv: list[str] | None = None) -> list[str]:
    """Move ``-m``/``--multirun`` before the overrides (in place on ``sys.argv`` by default).

    Hydra's argparse parser rejects ``python train.py experiment=x -m model=a,b`` (overrides on
    both sides of the flag: "unrecognized arguments"); the flag's position carries no meaning,
    so the documented form is made to work.
    """
    args = sys.argv if argv is None else argv
    flags = [a for a in args[1:] if a in MULTIRUN_FLAGS]
    if flags:
        args[1:] = [*flags, *(a for a in args[1:] if a not in MULTIRUN_FLAGS)]
    return args
