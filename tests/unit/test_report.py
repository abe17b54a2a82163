"""The run-once table: compact by default (fits 100 columns), wide on request with the
repetitions and the detector's minimum detectable effect per series; a quality per row."""

from __future__ import annotations

from rich.console import Console

from collector.domain.model import NoiseProbe
from collector.present.table import results_table
from tests.helpers import make_run


def _render(*args: object, width: int = 250, **kwargs: object) -> str:
    console = Console(width=width, record=True)
    console.print(results_table(*args, **kwargs))  # type: ignore[arg-type]  # a table's arguments
    return console.export_text()


def test_the_wide_table_shows_the_mde_of_each_series_headline_metric() -> None:
    run = make_run(models=("bert", "vit"))
    bert, vit = run.results
    text = _render([run], {(bert.series_id, "latency_p50_seconds"): 0.084,
                           (vit.series_id, "peak_rss_bytes"): 0.02}, wide=True)
    assert "MDE %" in text and "reps" in text
    [bert_line] = [line for line in text.splitlines() if "bert" in line and "│" in line]
    assert "8.4" in bert_line.split("│")[-3]
    [vit_line] = [line for line in text.splitlines() if "vit" in line and "│" in line]
    assert vit_line.split("│")[-3].strip() == "-"  # no MDE for its latency yet
    assert "smallest change" in text  # the caption says what the column means


def test_the_compact_table_fits_100_columns_and_marks_each_rows_quality() -> None:
    run = make_run(models=("bert", "vit", "gpt2"))
    bert, vit, gpt2 = run.results
    busy = NoiseProbe(wall_s=1.0, self_cpu_s=1.0, other_cpu_s=1.1, other_cpu_fraction=0.55)
    run = run.model_copy(update={"results": (bert, vit.model_copy(update={"noise": busy}),
                                             gpt2)})
    text = _render([run], width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    rows = [line for line in text.splitlines() if "│" in line]
    [vit_line] = [line for line in rows if "vit" in line]
    [bert_line] = [line for line in rows if "bert" in line]
    assert "busy 55%" in vit_line and "clean" in bert_line
    assert "MDE" not in text and "--wide" in text
