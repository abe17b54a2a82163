"""A comparison on standard output as a table, JSON or Markdown: what `compare`, `ab` and
`rerun` print (the last two add their own keys to the JSON and lines after the others)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from collector.analysis.compare import Comparison
from collector.present import markdown
from collector.present.documents import comparison_document, dumps
from collector.present.table import comparison_table, console


def print_comparison(comparison: Comparison, names: tuple[str, str], fmt: str,
                     extra: dict[str, Any] | None = None, lines: Sequence[str] = ()) -> None:
    if fmt == "json":
        sys.stdout.write(dumps({**comparison_document(comparison, names), **(extra or {})}))
        return
    if fmt == "markdown":
        sys.stdout.write(markdown.comparison(comparison, names))
        sys.stdout.write("".join(f"\n{line}\n" for line in lines))
        return
    out = console()
    out.print(comparison_table(comparison, names))
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
