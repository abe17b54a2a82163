"""One-line texts that the terminal, the logs and the reports share: a detected change's
line, its confirmation verdict and its A/B."""

from __future__ import annotations

import re
from typing import Any

from collector.domain.history import Regression
from collector.domain.model import Environment


def ab_line(ab: dict[str, Any] | None) -> str | None:
    """One line for a regression's A/B: its summary text (`A/B: 5.24.0 is 1.31x 5.23.0, 95%
    CI 1.27-1.35`), or why it failed; None without one. The SQL of the annotations view and
    of the dashboards' tables says the same (migrations/postgres/0009_regression_ab.sql)."""
    if not ab:
        return None
    if ab.get("failure"):
        return f"A/B failed: {ab['failure']}"
    text = ab.get("text")
    return str(text) if text else None


def confirmation_text(record: Regression) -> str:
    """` [confirmed by 6 confirmation point(s)]`, or nothing before confirmation runs."""
    if not record.confirmation:
        return ""
    c = record.confirmation
    return f" [{c.get('verdict')} by {c.get('points')} confirmation point(s)]"


def detection_line(record: Regression) -> str:
    """A change whose state moved: `regression open: latency_p50_seconds +12.0% on series
    ab12cd34ef56ab78 (transformers_version 5.23.0 -> 5.24.0) [confirmed by 6 confirmation
    point(s)]` (the id follows where the caller shows it)."""
    why = f" ({record.attribution})" if record.attribution else ""
    return (f"{record.kind} {record.status}: {record.metric} {record.relative_change:+.1%} on "
            f"series {record.series_id}{why}{confirmation_text(record)}")


# Characters that are not shown as themselves: C0 and C1 controls (an ANSI escape sequence
# starts with ESC, \x1b, and can recolour, move the cursor or retitle a terminal), line and
# paragraph separators, zero-width and bidirectional controls (they hide or reorder what is
# shown around them), and lone surrogates (no terminal or page can encode them).
_INVISIBLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def visible(text: str) -> str:
    """Data (a host name, a model id, a failure message read from a results file) as text a
    terminal or a page shows as it is: each invisible character written as its escape
    (`\\x1b`, `\\u202e`)."""
    return _INVISIBLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def environment_words(env: Environment) -> list[str]:
    """A host's software and hardware in a few words, only what is known: an imported
    result's tool may have recorded no Python, CPU or driver (never `Python None`)."""
    words = [f"{name} {value}" for name, value in (
        ("torch", env.torch_version), ("transformers", env.transformers_version),
        ("Python", env.python_version), ("commit", env.commit)) if value]
    if env.cpu_model or env.cpu_logical_cores:
        cores = f" ({env.cpu_logical_cores} logical cores)" if env.cpu_logical_cores else ""
        words.append(f"{env.cpu_model or 'CPU'}{cores}")
    if env.gpu_name:
        extra = ", ".join(f"{name} {value}" for name, value in (
            ("driver", env.gpu_driver), ("CUDA", env.cuda_version)) if value)
        words.append(env.gpu_name + (f" ({extra})" if extra else ""))
    return words


IMPORTED_CONDITIONS = ("their tools recorded neither the host's other load nor how well the "
                       "median settled")


def conditions_line(total: int, marked: int, imported: int, marked_text: str,
                    clean_text: str) -> str:
    """What a report says of its results' conditions: `marked_text` when some are marked
    (busy, unsettled), else `clean_text`, with the imported ones apart (nothing vouches
    for them being clean)."""
    if marked:
        return marked_text + (f"; {imported} imported ({IMPORTED_CONDITIONS})"
                              if imported else "")
    if imported == total:
        return f"every result imported ({IMPORTED_CONDITIONS})"
    if imported:
        return f"{imported} imported ({IMPORTED_CONDITIONS}), the rest {clean_text}"
    return f"every result {clean_text}"


def all_well_text(total: int, imported: int) -> str:
    """`Nothing: ...` of a report's "what needs a look": measured clean, except what was
    imported (its conditions unknown, so not called clean)."""
    if not imported:
        return "every benchmark succeeded and was measured clean"
    if imported == total:
        return f"every benchmark succeeded; all were imported ({IMPORTED_CONDITIONS})"
    return (f"every benchmark succeeded; the collector's own were measured clean, {imported} "
            f"imported ({IMPORTED_CONDITIONS})")
