"""Test-only helpers (importable as ``helpers``: pytest puts tests/ on sys.path, see pyproject's pythonpath)."""
