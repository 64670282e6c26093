"""The report charts, drawn with matplotlib and kept as inline SVG."""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from domain.labels import label
from tasks.reports.common import FONT_FAMILY, LIGHT_COLOURS, RULES
from tasks.reports.periods import Period

# --- charts (inline SVG) --------------------------------------------------------------------------

_RC: Any = {
    "svg.fonttype": "none",
    "svg.hashsalt": "datashare-report",
    "font.family": "sans-serif",
    "font.sans-serif": [*FONT_FAMILY[:-1], "DejaVu Sans"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(fig: Figure) -> str:
    """A figure as inline SVG: text stays text (the browser's CJK fonts draw it), no XML
    prologue, no metadata, no namespace URLs, deterministic ids."""
    buf = io.StringIO()
    with warnings.catch_warnings():
        # Without a CJK font installed here, matplotlib measures 中文 with a fallback glyph and
        # says so; the text is still written as text and the viewer's fonts render it.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    return svg.replace("'DejaVu Sans', ", "")


def chart_alert_trend(trend: pd.DataFrame) -> str:
    """Open alerts night by night, one small panel per rule that had any (small multiples: a
    dozen lines in one chart cannot be read), each titled with its last night's count and its
    change over the window; every panel has its own scale."""
    rules = [c for c in trend.columns if c != "night" and trend[c].sum() > 0]
    cols, panel_w, panel_h = 4, 1.85, 1.25
    rows = max(1, -(-len(rules) // cols))
    with rc_context(_RC):
        fig = Figure(figsize=(8.0, rows * panel_h + 0.65))
        fig.text(
            0.01,
            1 - 0.08 / fig.get_size_inches()[1],
            "每日未结预警（按规则；各小图纵轴刻度不同）",
            ha="left",
            va="top",
            fontsize=9.5,
        )
        if not rules:
            fig.text(0.5, 0.4, "无未结预警", ha="center", va="center")
        nights = trend["night"]
        for k, rule in enumerate(rules):
            r, c = divmod(k, cols)
            ax = fig.add_axes(
                (
                    (0.35 + c * (panel_w + 0.12)) / 8.0,
                    1 - ((r + 1) * panel_h + 0.35) / fig.get_size_inches()[1],
                    (panel_w - 0.3) / 8.0,
                    (panel_h - 0.55) / fig.get_size_inches()[1],
                )
            )
            values = trend[rule]
            ax.fill_between(nights, values, color="#bbdefb", linewidth=0)
            ax.plot(nights, values, color="#1565c0", linewidth=1.2)
            change = int(values.iloc[-1] - values.iloc[0])
            title = f"{rule} {label('risk', RULES.get(rule, ('', ''))[0])}".strip()
            ax.set_title(
                f"{title}：{int(values.iloc[-1])} 条（{change:+d}）", loc="left", fontsize=7.5
            )
            ax.set_ylim(0, max(1, int(values.max())) * 1.15)
            ax.set_yticks([0, max(1, int(values.max()))])
            ax.tick_params(labelsize=6.5, length=2)
            ax.set_xticks(
                [nights.iloc[0], nights.iloc[-1]],
                [f"{nights.iloc[0]:%m-%d}", f"{nights.iloc[-1]:%m-%d}"],
            )
        return _svg(fig)


def _axes_box(fig: Figure, left: float, bottom: float, right: float, top: float) -> Any:
    """Axes placed by margins in inches (no text measuring: CJK metrics vary by machine)."""
    w, h = fig.get_size_inches()
    return fig.add_axes((left / w, bottom / h, 1 - (left + right) / w, 1 - (bottom + top) / h))


def chart_elimination(by_town: pd.DataFrame) -> str:
    """风险消除率 by town, households and persons (towns with no monitoring object left out)."""
    rows = by_town.loc[by_town["identified_hh"] > 0].iloc[::-1]
    with rc_context(_RC):
        fig = Figure(figsize=(8.0, 0.36 * max(len(rows), 1) + 1.3))
        ax = _axes_box(fig, 1.1, 0.6, 0.3, 0.4)
        y = np.arange(len(rows))
        hh = rows["elim_rate_hh"].fillna(0).to_numpy() * 100
        pp = rows["elim_rate_persons"].fillna(0).to_numpy() * 100
        ax.barh(y + 0.2, hh, height=0.38, color="#1565c0", label="户")
        ax.barh(y - 0.2, pp, height=0.38, color="#90caf9", label="人")
        bases = zip(y, hh, rows["eliminated_hh"], rows["identified_hh"], strict=True)
        for yi, v, done, base in bases:
            # the base count beside the rate: 50 % of 2 households is not 50 % of 200
            ax.text(v + 0.8, yi + 0.2, f"{v:.1f}%（{done}/{base} 户）", va="center", fontsize=7)
        ax.set_yticks(y, list(rows["town"]))
        ax.set_xlim(0, 125)
        ax.set_xticks([0, 20, 40, 60, 80, 100])
        ax.set_xlabel("风险消除率（%）")
        ax.set_title("各乡镇风险消除率（已消除 / 监测对象）", loc="left")
        if len(rows):
            ax.legend(loc="lower right", frameon=False)
        else:
            ax.text(56, 0, "无监测对象", ha="center", va="center")
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        return _svg(fig)


def chart_intake(intake: pd.DataFrame, days: pd.DataFrame, period: Period) -> str:
    """Intake lights: department x day (worst light of its deliveries due that day), and the
    department's light for the period."""
    depts = list(intake["dept"])
    dates = pd.date_range(period.start, period.end, freq="D")
    lookup = {(r.dept, r.exchange_date): r.light for r in days.itertuples()}
    period_light = intake.set_index("dept")["light"]
    with rc_context(_RC):
        fig = Figure(figsize=(max(6.0, 2.0 + 0.24 * (len(dates) + 2)), 0.3 * len(depts) + 1.1))
        ax = _axes_box(fig, 1.7, 0.45, 0.2, 0.5)
        for yi, dept in enumerate(reversed(depts)):
            colours = [LIGHT_COLOURS[lookup.get((dept, d), "—")] for d in dates]
            ax.scatter(np.arange(len(dates)), [yi] * len(dates), c=colours, s=42, marker="s")
            ax.scatter(
                [len(dates) + 1], [yi], c=[LIGHT_COLOURS[period_light[dept]]], s=120, marker="o"
            )
        names = intake.set_index("dept")["dept_name"]
        ax.set_yticks(np.arange(len(depts)), [names[d] for d in reversed(depts)])
        step = 1 if len(dates) <= 10 else 3
        xt = list(range(0, len(dates), step))
        ax.set_xticks([*xt, len(dates) + 1], [f"{dates[i]:%m-%d}" for i in xt] + ["本期"])
        ax.set_xlim(-0.8, len(dates) + 1.8)
        ax.set_ylim(-0.7, len(depts) - 0.3)
        ax.tick_params(length=0)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        # At the figure's left edge: a week's chart is narrower than this title.
        fig.text(
            0.01,
            1 - 0.12 / fig.get_size_inches()[1],
            "交换信号灯（绿：按时；黄：迟报或曾退回；红：缺报或退回未重报；灰：无应报）",
            ha="left",
            va="top",
            fontsize=8.5,
        )
        return _svg(fig)
