"""The one base class of user errors: bad input or settings the user can fix (one line, no traceback).

Entry points print ``str(error)`` and exit 2 for these; anything else is a bug and keeps its
traceback. Subclasses ``ValueError`` so callers that catch ValueError keep working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Something the user gave (a file, a folder, a setting) cannot be used; the message says the fix."""
