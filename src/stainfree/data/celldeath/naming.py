"""Labels, cell line, time point and replicate parsed from transmitted-light FILE NAMES.

The celldeath study keeps all metadata in the file name, spelt inconsistently by hand
(`U2_CPT2_1H_RGB_0046_N3.png`, `U2_DMSO_1h_..._N1.png`, the tool's own `control`/`celldeath`).
A name is split into tokens and each token is matched (case-insensitive, whole token, regex
allowed) against configurable tables, so new spellings are a config change, not a code change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from stainfree.utils.errors import UserError

# Labels match whole tokens. The original tool found "control"/"celldeath" anywhere in the name
# (e.g. `PC3control_01.png`), hence the `.*` around those two; drug tokens stay exact.
DEFAULT_LABELS: dict[str, list[str]] = {
    "control": [r"DMSO\d*", r".*control.*", r"vehicle\d*"],
    "celldeath": [r"CPT\d*", r".*celldeath.*"],
}
DEFAULT_CELL_LINES: dict[str, list[str]] = {
    "PC3": [r"PC-?3"],
    "MCF7": [r"MCF-?7"],
    "T47D": [r"T-?47-?D"],
    "U2OS": [r"U2", r"U2-?OS"],
    "iPS1": [r"iPS-?1"],
    "iPS2": [r"iPS-?2"],
    "H9": [r"H9"],
}
DEFAULT_SEPARATORS = r"[_\s]+"
DEFAULT_TIME_REGEX = r"(\d+)hs?"  # the authors also wrote `1HS`
DEFAULT_REPLICATE_REGEX = r"N(\d+)"
# Image suffixes inside a name (the authors' tiles are `<original>.png_<row>_<col>.png`).
_INNER_SUFFIX = re.compile(r"\.(png|jpe?g|tiff?)(?=_|$)", re.IGNORECASE)


class NameParseError(UserError):
    """A file name is ambiguous (two labels, two cell lines...); the message names the file."""


@dataclass(frozen=True)
class ParsedName:
    """Metadata read from one file name; ``label`` is None when no label token matched."""

    label: str | None
    treatment_token: str | None
    cell_line: str | None
    time: int | None
    replicate: str | None


def _compile_table(table: Mapping[str, Iterable[str]], what: str) -> list[tuple[str, re.Pattern[str]]]:
    """Compile ``{name: [token regex, ...]}`` into whole-token, case-insensitive patterns."""
    compiled = []
    for name, tokens in table.items():
        if isinstance(tokens, str):
            tokens = [tokens]
        for token in tokens:
            try:
                compiled.append((str(name), re.compile(rf"(?:{token})", re.IGNORECASE)))
            except re.error as err:
                raise UserError(
                    f"naming.{what}.{name}: token '{token}' is not a valid regex ({err}); escape it"
                ) from err
    return compiled


@dataclass
class NameScheme:
    """Configurable token scheme; ``parse(name)`` returns a ``ParsedName``.

    ``labels``/``cell_lines`` map a canonical name to token regexes (matched against a whole
    token, case-insensitive). ``time_regex``/``replicate_regex`` must fullmatch one token and
    capture the number. Unknown tokens (image index, `RGB`) are ignored.
    """

    labels: Mapping[str, Iterable[str]] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    cell_lines: Mapping[str, Iterable[str]] = field(default_factory=lambda: dict(DEFAULT_CELL_LINES))
    separators: str = DEFAULT_SEPARATORS
    time_regex: str = DEFAULT_TIME_REGEX
    replicate_regex: str = DEFAULT_REPLICATE_REGEX
    default_cell_line: str | None = None

    def __post_init__(self) -> None:
        self._labels = _compile_table(self.labels, "labels")
        self._lines = _compile_table(self.cell_lines, "cell_lines")
        self._sep = re.compile(self.separators)
        self._time = re.compile(self.time_regex, re.IGNORECASE)
        self._rep = re.compile(self.replicate_regex, re.IGNORECASE)
        if self._time.groups < 1 or self._rep.groups < 1:
            raise UserError("naming.time_regex and naming.replicate_regex need one capture group, e.g. '(\\d+)h'")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "NameScheme":
        """Build from a (Hydra) mapping; missing keys keep the defaults."""
        cfg = dict(cfg or {})
        unknown = set(cfg) - {"labels", "cell_lines", "separators", "time_regex", "replicate_regex", "default_cell_line"}
        if unknown:
            raise UserError(f"data.naming: unknown keys {sorted(unknown)}; allowed: labels, cell_lines, "
                             "separators, time_regex, replicate_regex, default_cell_line")
        for key in ("labels", "cell_lines"):
            if key in cfg and cfg[key] is not None:
                cfg[key] = {str(k): list(v) if not isinstance(v, str) else [v] for k, v in dict(cfg[key]).items()}
            elif key in cfg:
                del cfg[key]
        return cls(**cfg)

    def tokens(self, name: str) -> list[str]:
        """Split a file name (no folders) into tokens, dropping image suffixes anywhere in it."""
        stem = _INNER_SUFFIX.sub("", Path(name).name)
        return [t for t in self._sep.split(stem) if t]

    def parse(self, name: str) -> ParsedName:
        """Parse one file name; raises ``NameParseError`` when two labels or lines match."""
        labels: dict[str, str] = {}
        lines: set[str] = set()
        times: set[int] = set()
        reps: set[str] = set()
        for token in self.tokens(name):
            for label, pattern in self._labels:
                if pattern.fullmatch(token):
                    labels.setdefault(label, token)
            for line, pattern in self._lines:
                if pattern.fullmatch(token):
                    lines.add(line)
            if m := self._time.fullmatch(token):
                times.add(int(m.group(1)))
            if m := self._rep.fullmatch(token):
                reps.add(f"N{int(m.group(1))}")
        for what, found in (("labels", labels), ("cell lines", lines), ("time points", times), ("replicates", reps)):
            if len(found) > 1:
                raise NameParseError(
                    f"{name}: matches several {what} {sorted(found)}; rename the file or make the "
                    f"data.naming tokens more specific"
                )
        label = next(iter(labels), None)
        return ParsedName(
            label=label,
            treatment_token=labels[label] if label else None,
            cell_line=next(iter(lines), self.default_cell_line),
            time=next(iter(times), None),
            replicate=next(iter(reps), None),
        )
