"""Plotly figures for the HTML report, readable ones: linear axes wherever bars are drawn,
titles in words with their unit, colours that do not repeat within a chart, hover text
with the whole workload. Every string from the data is escaped before plotly sees it
(plotly renders a subset of HTML in names, tick labels and hover text).

Plotly rather than Vega-Lite through altair: inlining Vega-Lite offline needs altair's
vl-convert (a 50+ MB native wheel) or three separately vendored scripts, while plotly ships
its one minified bundle in its pure-Python wheel (about 4.8 MB of a report)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from collector.domain.catalogue import METRICS
from collector.domain.errors import InputError

# 24 dark and 24 light colours, distinct enough to tell 48 traces apart.
_PALETTE = ("#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100",
            "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D",
            "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA",
            "#6C4516", "#0D2A63", "#AF0038", "#FD3216", "#00FE35", "#6A76FC", "#FED4C4",
            "#FE00CE", "#0DF9FF", "#F6F926", "#FF9616", "#479B55", "#EEA6FB", "#DC587D",
            "#D626FF", "#6E899C", "#00B5F7", "#B68E00", "#C9FBE5", "#FF0092", "#22FFA7",
            "#E3EE9E", "#86CE00", "#BC7196", "#7E7DCD", "#FC6955", "#E48F72")


def text(value: object) -> str:
    """A data string as plotly should show it: its markup escaped (`<`, `>` and `&`: no tag
    can start; plotly would show an escaped quote as `&quot;`)."""
    return html.escape(str(value), quote=False)


def scale(metric: str) -> float:
    """Charts show seconds as ms and bytes as MiB, as the tables do."""
    unit = METRICS[metric].unit
    return 1e3 if unit == "seconds" else 1 / 2**20 if unit == "bytes" else (
        1e-6 if unit == "instructions" else 1.0)


class Charts:
    """Plotly figures as HTML fragments (the library's JS is inlined once, in the head)."""

    def __init__(self) -> None:
        try:
            import plotly.graph_objects as go  # only the HTML report needs it
        except ImportError:  # a core dependency: only a broken installation lacks it
            raise InputError("the HTML report needs plotly (pip install plotly)") from None
        self.go = go
        self.count = 0

    def _html(self, figure: Any, title: str, x_title: str, y_title: str, *,
              height: int = 420, log_x: bool = False) -> str:
        self.count += 1
        figure.update_layout(
            title={"text": text(title)}, template="plotly_white", height=height,
            margin={"l": 70, "r": 20, "t": 50, "b": 60}, hovermode="closest",
            colorway=list(_PALETTE), legend={"font": {"size": 11}})
        figure.update_xaxes(title_text=text(x_title), type="log" if log_x else None)
        figure.update_yaxes(title_text=text(y_title))
        fragment: str = figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"chart-{self.count}",
            config={"displaylogo": False, "responsive": True})
        return f'<div class="chart">{fragment}</div>'

    def bars(self, title: str, metric: str, groups: dict[str, list[tuple[str, float, str]]]
             ) -> str:
        """Horizontal bars on a linear axis: one colour per group (e.g. a model), each bar
        (label, value in the metric's unit, hover text)."""
        figure = self.go.Figure()
        factor = scale(metric)
        count = 0
        for name, bars in groups.items():
            count += len(bars)
            figure.add_trace(self.go.Bar(
                orientation="h", name=text(name), y=[text(label) for label, _, _ in bars],
                x=[value * factor for _, value, _ in bars],
                hovertext=[text(hover) for _, _, hover in bars],
                hovertemplate="%{hovertext}<br>%{x:.4g}<extra></extra>"))
        figure.update_yaxes(automargin=True, autorange="reversed")
        return self._html(figure, title, METRICS[metric].title, "",
                          height=max(300, 110 + 26 * count))

    def lines(self, title: str, x_title: str, metric: str,
              lines: Mapping[str, tuple[Sequence[float | datetime], Sequence[float]]], *,
              log_x: bool = False,
              marks: Sequence[tuple[str, str, Sequence[tuple[datetime, float, str]]]] = ()
              ) -> str:
        """Lines of `metric` against x (numbers or times) on a linear value axis, one colour
        per line (named by its whole workload), and marker sets (name, symbol, points)."""
        figure = self.go.Figure()
        factor = scale(metric)
        for name, (xs, ys) in lines.items():
            figure.add_trace(self.go.Scatter(
                x=list(xs), y=[y * factor for y in ys], mode="lines+markers", name=text(name),
                hovertemplate=f"{text(name)}<br>%{{x}}: %{{y:.4g}}<extra></extra>"))
        for name, symbol, points in marks:
            if points:
                figure.add_trace(self.go.Scatter(
                    x=[p[0] for p in points], y=[p[1] * factor for p in points],
                    mode="markers", name=text(name),
                    marker={"symbol": symbol, "size": 13, "color": "#cf222e"},
                    hovertext=[text(p[2]) for p in points],
                    hovertemplate="%{hovertext}<extra></extra>"))
        return self._html(figure, title, x_title, METRICS[metric].title, log_x=log_x)

    def scatter(self, title: str, x_metric: str, y_metric: str,
                groups: dict[str, list[tuple[float, float, str]]]) -> str:
        figure = self.go.Figure()
        fx, fy = scale(x_metric), scale(y_metric)
        for name, points in groups.items():
            figure.add_trace(self.go.Scatter(
                x=[x * fx for x, _, _ in points], y=[y * fy for _, y, _ in points],
                mode="markers", name=text(name), marker={"size": 10},
                hovertext=[text(h) for _, _, h in points],
                hovertemplate="%{hovertext}<br>%{x:.3g}, %{y:.3g}<extra></extra>"))
        return self._html(figure, title, METRICS[x_metric].title, METRICS[y_metric].title)

    @staticmethod
    def script() -> str:
        from plotly.offline import get_plotlyjs

        return str(get_plotlyjs())
