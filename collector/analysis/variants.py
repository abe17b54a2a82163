"""Which variant of a model is fastest: one table per model (on one host and device) across
the variants it was measured in (backend and its settings, dtype, quantization, attention),
whatever the benchmarks that measured them are called, one column per shape (batch,
sequence, new tokens). Each cell is the latest result's headline value and its ratio to the
best of its column (1.00x is the best; above is slower, or less, whatever the metric's
direction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from collector.domain.catalogue import METRICS, Direction, headline
from collector.domain.model import BenchmarkResult, Quantization
from collector.domain.series import series_info
from collector.domain.workload import format_label


@dataclass(frozen=True)
class Cell:
    value: float
    ratio: float  # to the best of its column: 1.0 is the best, above is worse
    result: BenchmarkResult


@dataclass(frozen=True)
class VariantTable:
    model: str  # the model's identity (collector.domain.series.model_label)
    benchmarks: tuple[str, ...]  # the benchmarks that measured it
    host: str
    device: str
    task: str
    metric: str
    columns: tuple[str, ...]  # shapes
    rows: tuple[tuple[str, dict[str, Cell]], ...]  # variant -> column -> cell, best first

    def best(self, column: str) -> str | None:
        return next((variant for variant, cells in self.rows
                     if column in cells and cells[column].ratio == 1.0), None)


def variant_of(result: BenchmarkResult) -> str:
    """The variant part of a workload: backend (and its own settings that are not their
    defaults), dtype, quantization, attention."""
    spec = result.spec
    parts = [spec.backend]
    settings = spec.backend_settings()
    if settings is not None:
        parts += [str(v) for v in settings.model_dump(mode="json", exclude_defaults=True)
                  .values()]
    parts.append(spec.dtype.value)
    if spec.quantization is not Quantization.NONE:
        parts.append(spec.quantization.value)
    if spec.attention is not None:
        parts.append(f"attn={spec.attention}")
    return " ".join(parts)


def shape_of(result: BenchmarkResult) -> str:
    """The shape part of a workload's label (batch, sequence, new tokens as its task
    uses them)."""
    info = series_info(result)
    return format_label({"batch_size": info.batch_size, "sequence_length": info.sequence_length,
                         "new_tokens": info.new_tokens, "task": info.task})


def _order(shapes: set[str]) -> list[str]:
    def key(shape: str) -> list[int]:
        return [int(part.split("=")[1]) for part in shape.split() if "=" in part]
    return sorted(shapes, key=key)


def fastest_variants(results: Sequence[BenchmarkResult]) -> list[VariantTable]:
    """A table per model, host and device with two variants or more (the latest
    successful result of each workload)."""
    latest: dict[str, BenchmarkResult] = {}
    for result in sorted((r for r in results if r.status == "ok"), key=lambda r: r.finished_at):
        key = json.dumps([result.spec.identity(), result.environment.host], sort_keys=True)
        latest[key] = result
    groups: dict[tuple[str, str, str, str, str], list[BenchmarkResult]] = {}
    for result in latest.values():
        info = series_info(result)
        metric = headline(result.metrics)
        groups.setdefault((info.model, info.host, info.device, info.task, metric),
                          []).append(result)
    tables = []
    for (model, host, device, task, metric), members in sorted(groups.items()):
        if len({variant_of(r) for r in members}) < 2:
            continue
        columns = _order({shape_of(r) for r in members})
        lower = METRICS[metric].direction is not Direction.HIGHER_IS_BETTER
        values: dict[str, dict[str, BenchmarkResult]] = {}
        for result in members:
            values.setdefault(variant_of(result), {})[shape_of(result)] = result
        best = {}
        for column in columns:
            present = [v[column].metrics[metric] for v in values.values() if column in v]
            best[column] = min(present) if lower else max(present)
        rows = []
        for variant, by_shape in values.items():
            cells = {}
            for column, result in by_shape.items():
                value = result.metrics[metric]
                ratio = value / best[column] if lower else best[column] / value
                cells[column] = Cell(value, ratio, result)
            rows.append((variant, cells))
        rows.sort(key=lambda row: (min(c.ratio for c in row[1].values()), row[0]))
        tables.append(VariantTable(model, tuple(sorted({r.spec.name for r in members})), host,
                                   device, task, metric, tuple(columns), tuple(rows)))
    return tables
