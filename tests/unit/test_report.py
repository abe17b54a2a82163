"""The run-once table: repetitions and the detector's minimum detectable effect per series."""

from __future__ import annotations

from rich.console import Console

from collector.present.table import results_table
from tests.helpers import make_run


def _render(*args: object) -> str:
    console = Console(width=250, record=True)
    console.print(results_table(*args))  # type: ignore[arg-type]  # a table's arguments
    return console.export_text()


def test_the_table_shows_the_mde_of_each_series_headline_metric() -> None:
    run = make_run(models=("bert", "vit"))
    bert, vit = run.results
    text = _render([run], {(bert.series_id, "latency_p50_seconds"): 0.084,
                           (vit.series_id, "peak_rss_bytes"): 0.02})
    assert "MDE %" in text and "reps" in text
    [bert_line] = [line for line in text.splitlines() if line.lstrip("│ ").startswith("s ")
                   and "bert" in line]
    assert "8.4" in bert_line.split("│")[-2]
    [vit_line] = [line for line in text.splitlines() if "vit" in line]
    assert vit_line.split("│")[-2].strip() == "-"  # no MDE for its latency yet
    assert "smallest change" in text  # the caption says what the column means
