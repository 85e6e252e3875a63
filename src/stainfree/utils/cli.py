"""Starting an entry point: the project root, the offline environment, ``-m`` anywhere, one error policy.

Every command-line tool (train.py, eval.py, predict.py, benchmarks/bench.py,
``python -m stainfree.evaluation.compare``) runs through :func:`run_cli`, so they all behave the
same way: a user error (a :class:`~stainfree.utils.errors.UserError` anywhere in the exception's
cause chain, a Hydra composition error, a missing mandatory option) prints ONE line naming the
thing and the fix on stderr and exits 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from stainfree.utils.env import configure_offline_environment
from stainfree.utils.errors import UserError

# src/stainfree/utils/cli.py -> the checkout that holds conf/ (and, by default, data/ and logs/)
REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = str(REPO_ROOT / "conf")
MULTIRUN_FLAGS = ("-m", "--multirun")
USER_ERROR_STATUS = 2


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


class UserErrorExit(SystemExit):
    """Carries a user error's one line out of Hydra's job runner, which would otherwise add its own report."""

    def __init__(self, message: str) -> None:
        super().__init__(USER_ERROR_STATUS)
        self.message = message


def task_main(config_name: str) -> Callable[[Callable[[Any], Any]], Callable[[], Any]]:
    """``@hydra.main`` for a task of conf/<config_name>.yaml whose user errors end as one line (see run_cli)."""
    import hydra

    def decorate(task: Callable[[Any], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def checked(cfg: Any) -> Any:
            try:
                return task(cfg)
            except Exception as exc:
                message = user_error_message(exc)
                if message is None:
                    raise
                raise UserErrorExit(message) from exc

        return hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(checked)

    return decorate


def run_cli(entry: str | Callable[[], Any]) -> None:
    """Run an entry point under the house rules, then exit.

    ``entry`` is a callable, or the name of a module whose ``main()`` is called: a name is
    imported only after the environment is set, so no library reads it too early. The exit
    status is the entry's int return value (0 otherwise), or 2 after a user error.
    """
    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    configure_offline_environment()
    # Hydra would print its own multi-line report and exit 1; let its errors reach the policy below.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    multirun_flag_first()
    try:
        main = importlib.import_module(entry).main if isinstance(entry, str) else entry
        status = main()
    except UserErrorExit as stop:
        _fail(stop.message)
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        _fail(message)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)


def _fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_STATUS)


def user_error_message(exc: BaseException) -> str | None:
    """The one line to print for a user error, or None when ``exc`` is a bug."""
    from hydra.errors import CompactHydraException, InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    for err in _cause_chain(exc):
        if isinstance(err, UserError):
            return one_line(str(err))
    for err in _cause_chain(exc):
        if isinstance(err, MissingMandatoryValue):
            key = getattr(err, "full_key", None) or "a mandatory option"
            return f"{key} is required: add {key}=<value> to the command line"
    if isinstance(exc, CompactHydraException) and not isinstance(exc, InstantiationException):
        return _hydra_message(exc)
    return None


def one_line(text: str) -> str:
    """A message on one line (line breaks become '; ', indentation is dropped)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised ``from`` (Hydra wraps errors raised while instantiating a config).

    Only explicit causes count: a bug raised while handling a user error is still a bug.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _hydra_message(exc: BaseException) -> str:
    """Hydra's composition report (unknown group option, unknown key, bad override) on one line."""
    lines = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("Config search path", "Available options")):
            break
        if line and not line.startswith(("full_key:", "object_type=", "reference_type=")):
            lines.append(line)
    message = " ".join(lines) or type(exc).__name__
    options = [o for o in getattr(exc, "options", None) or [] if not o.startswith("_")]  # _x: internal bases
    if options:
        message += f"; choose one of: {', '.join(options)}"
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        reason = str(cause).strip().splitlines()[0]
        if reason not in message:
            message += f" ({reason})"
    return message
