"""The one line between a user's mistake and a bug.

A ``UserError`` is something the user gave (a path, an option, a file, data) that cannot work;
its message names the thing and the fix, and every CLI prints it as one line and exits 2
(``stainfree.utils.cli.run_cli``). Any other exception is a bug and keeps its traceback.
``UserError`` subclasses ``ValueError`` so code that caught the old ``ValueError``s still works.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message says what is wrong and how to fix it."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (still a ``FileNotFoundError``)."""
