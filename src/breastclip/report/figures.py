"""Report figures: each a function from plain data (arrays, DataFrames) to a matplotlib Figure.

Print-ready by construction: Agg backend, labelled axes, the Okabe-Ito colour-blind-safe palette, and a footer on
every figure stating research use only. :func:`save_figure` writes ``<stem>.png`` and ``<stem>.jpg`` at 300 dpi.
No metric is computed here: callers pass what the evaluation layer already measured.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from PIL import Image

from breastclip import RESEARCH_ONLY

DPI = 300
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies and in greyscale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
FOOTER = f"breastclip - {RESEARCH_ONLY}"
_RC: dict[Any, Any] = {  # matplotlib types rc keys as a Literal of every rc name
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}


@dataclass(frozen=True)
class Curve:
    """One curve (ROC or PR) with an optional pointwise confidence band on the same x grid.

    ``score`` is the area (AUC or average precision) and ``ci`` its 95% interval; ``baseline`` is the chance level
    (the class prevalence for a PR curve).
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    score: float | None = None
    ci: tuple[float, float] | None = None
    baseline: float | None = None


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw the whole figure under the report style (rc settings apply to artists created inside the context)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> Figure:
        with plt.rc_context(_RC):
            return func(*args, **kwargs)

    return wrapper


def _figure(width: float = 6.0, height: float = 4.2, **kw) -> Figure:
    """A constrained-layout figure with the research-only footer in a reserved strip at the bottom."""
    fig = plt.figure(figsize=(width, height), layout="constrained", **kw)
    engine = fig.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine)  # layout="constrained" above
    engine.set(rect=(0, 0.045, 1, 0.955))
    fig.text(0.5, 0.008, FOOTER, ha="center", va="bottom", fontsize=6.5, color="0.35")
    return fig


def _subplots(nrows: int = 1, ncols: int = 1, width: float = 6.0, height: float = 4.2, **kw):
    fig = _figure(width, height)
    return fig, fig.subplots(nrows, ncols, **kw)


def _label_value(label: str, score: float | None, ci: tuple[float, float] | None, name: str) -> str:
    if score is None or not np.isfinite(score):
        return label
    text = f"{label} ({name} {score:.3f}"
    if ci is not None and all(np.isfinite(ci)):
        text += f" [{ci[0]:.3f}-{ci[1]:.3f}]"
    return text + ")"


def save_figure(fig: Figure, stem: str | Path, *, dpi: int = DPI) -> tuple[Path, Path]:
    """Write ``<stem>.png`` and ``<stem>.jpg`` at ``dpi`` (300 by default); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, jpg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".jpg")
    fig.savefig(png, dpi=dpi, metadata={"Description": RESEARCH_ONLY, "Software": "breastclip"})
    # the JPG is the same raster (drawing a 300-dpi figure twice costs more than re-encoding it)
    with Image.open(png) as im:
        im.convert("RGB").save(jpg, quality=92, dpi=(dpi, dpi), comment=RESEARCH_ONLY.encode())
    return png, jpg


# ---- data set ------------------------------------------------------------------------------------------------
@_styled
def class_distribution(counts: pd.DataFrame, *, title: str = "Class distribution by split") -> Figure:
    """Grouped bars of image counts: ``counts`` has one row per split and one column per class."""
    counts = counts.fillna(0).astype(int)
    fig, ax = _subplots(width=6.0, height=3.6)
    n_cls = max(len(counts.columns), 1)
    width = 0.8 / n_cls
    x = np.arange(len(counts.index))
    for j, cls in enumerate(counts.columns):
        bars = ax.bar(x + (j - (n_cls - 1) / 2) * width, counts[cls].to_numpy(), width, label=str(cls),
                      color=color(j), edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, fontsize=6.5, padding=1)
    ax.set_xticks(x, [str(s) for s in counts.index])
    ax.set_xlabel("Split")
    ax.set_ylabel("Images")
    ax.set_title(title)
    ax.margins(y=0.12)
    ax.legend(title="Class", frameon=False)
    return fig


@_styled
def loss_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], *, title: str = "Training and validation loss"
                ) -> Figure:
    """Loss per epoch for each trained method: ``histories[method]`` is a list of per-epoch dicts holding
    ``train_loss`` and optionally ``val_loss`` (and ``epoch``; defaults to 1, 2, ...)."""
    fig, ax = _subplots(width=6.0, height=3.8)
    drawn = False
    for i, (method, hist) in enumerate(histories.items()):
        if not hist:
            continue
        df = pd.DataFrame(list(hist))
        epoch = df["epoch"].to_numpy() if "epoch" in df else np.arange(1, len(df) + 1)
        for col, style, suffix in (("train_loss", "-", "train"), ("val_loss", "--", "validation")):
            if col in df and df[col].notna().any():
                ax.plot(epoch, df[col].to_numpy(dtype=float), style, color=color(i), lw=1.4,
                        label=f"{method} ({suffix})")
                drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no training history recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss (cross-entropy)")
    ax.set_title(title)
    if drawn:
        ax.legend(frameon=False, ncols=1 if len(histories) < 4 else 2)
    return fig


# ---- classification -----------------------------------------------------------------------------------------
@_styled
def confusion_matrix(counts: np.ndarray, classes: Sequence[str], *, title: str = "Confusion matrix (row-normalised)"
                     ) -> Figure:
    """Row-normalised confusion matrix (rows: true class, sums to 1), each cell annotated with share and count."""
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    k = len(classes)
    side = 2.2 + 0.75 * k
    fig, ax = _subplots(width=side + 1.0, height=side)
    ax.grid(False)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}\n(n={int(counts[i, j])})", ha="center", va="center", fontsize=7.5,
                    color="white" if norm[i, j] > 0.55 else "black")
    ax.set_xticks(range(k), classes, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), [f"{c}\n(n={int(r)})" for c, r in zip(classes, rows[:, 0], strict=True)])
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Share of true class")
    return fig


@_styled
def _curves(curves: Sequence[Curve], *, kind: str, title: str) -> Figure:
    fig, ax = _subplots(width=5.2, height=4.8)
    roc = kind == "roc"
    for i, c in enumerate(curves):
        col = color(i)
        if c.lo is not None and c.hi is not None:
            ax.fill_between(c.x, c.lo, c.hi, color=col, alpha=0.18, lw=0, step="post")
        ax.plot(c.x, c.y, color=col, lw=1.5, drawstyle="steps-post",
                label=_label_value(c.label, c.score, c.ci, "AUC" if roc else "AP"))
        if not roc and c.baseline is not None:
            ax.axhline(c.baseline, color=col, lw=0.8, ls=":")
    if roc:
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls=":", label="chance")
        ax.set_xlabel("False positive rate (1 - specificity)")
        ax.set_ylabel("True positive rate (sensitivity)")
    else:
        ax.set_xlabel("Recall (sensitivity)")
        ax.set_ylabel("Precision (positive predictive value)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(frameon=False, loc="lower right" if roc else "lower left", fontsize=7)
    return fig


def roc_curves(curves: Sequence[Curve], *, title: str = "ROC curves (one-vs-rest, 95% CI bands)") -> Figure:
    """ROC curves, one per class (one-vs-rest) or per method, shaded with their bootstrap bands."""
    return _curves(curves, kind="roc", title=title)


def pr_curves(curves: Sequence[Curve], *, title: str = "Precision-recall curves (one-vs-rest, 95% CI bands)"
              ) -> Figure:
    """Precision-recall curves with bands; a dotted line per curve marks its prevalence (chance level)."""
    return _curves(curves, kind="pr", title=title)


@_styled
def calibration(bins: pd.DataFrame, *, ece: float | None = None, title: str = "Calibration (reliability diagram)"
                ) -> Figure:
    """Reliability diagram: observed accuracy against mean confidence per bin, bin sizes below.

    ``bins`` columns: ``confidence`` (mean predicted probability), ``accuracy`` (observed frequency), ``count``;
    optional ``lower`` / ``upper`` (bin edges).
    """
    fig = _figure(width=5.0, height=5.2)
    ax, axh = fig.subplots(2, 1, sharex=True, height_ratios=(3.2, 1))
    b = bins[bins["count"] > 0] if "count" in bins else bins
    conf = b["confidence"].to_numpy(dtype=float)
    acc = b["accuracy"].to_numpy(dtype=float)
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls=":", label="perfect calibration")
    if "lower" in b and "upper" in b:
        widths = (b["upper"] - b["lower"]).to_numpy(dtype=float)
        centers = ((b["upper"] + b["lower"]) / 2).to_numpy(dtype=float)
    else:
        widths = np.full(len(b), 1.0 / max(len(bins), 1))
        centers = conf
    ax.bar(centers, acc, widths * 0.92, color=PALETTE[0], alpha=0.35, edgecolor=PALETTE[0], lw=0.6,
           label="observed accuracy")
    ax.plot(conf, acc, "o-", color=PALETTE[1], ms=3.5, lw=1.2, label="mean confidence vs accuracy")
    ax.set_ylabel("Observed accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title + (f"  -  ECE {ece:.3f}" if ece is not None and np.isfinite(ece) else ""))
    ax.legend(frameon=True, framealpha=0.85, edgecolor="none", loc="best")
    counts = b["count"].to_numpy(dtype=float) if "count" in b else np.zeros(len(b))
    axh.bar(centers, counts, widths * 0.92, color="0.55")
    axh.set_xlabel("Confidence (predicted probability of the predicted class)")
    axh.set_ylabel("Images")
    return fig


@_styled
def threshold_tradeoff(sweep: pd.DataFrame, *, operating_points: Mapping[str, float] | None = None,
                       positive: str = "positive", title: str | None = None) -> Figure:
    """False positives / false negatives (counts) and sensitivity / specificity across decision thresholds.

    ``sweep`` columns: ``threshold``, ``fp``, ``fn``, and optionally ``sensitivity``, ``specificity``.
    ``operating_points`` maps a rule name (Youden, ...) to the threshold it froze on validation.
    """
    fig = _figure(width=6.4, height=5.2)
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1))
    s = sweep.sort_values("threshold")
    t = s["threshold"].to_numpy(dtype=float)
    ax.plot(t, s["fp"], color=PALETTE[1], lw=1.5, label="false positives")
    ax.plot(t, s["fn"], color=PALETTE[0], lw=1.5, ls="--", label="false negatives")
    ax.set_ylabel("Images")
    ax.set_title(title or f"Threshold trade-off ({positive} vs rest)")
    if "sensitivity" in s and "specificity" in s:
        ax2.plot(t, s["sensitivity"], color=PALETTE[2], lw=1.5, label="sensitivity")
        ax2.plot(t, s["specificity"], color=PALETTE[3], lw=1.5, ls="--", label="specificity")
        ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("Rate")
    ax2.set_xlabel(f"Threshold on P({positive})")
    styles = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))
    for i, (name, thr) in enumerate((operating_points or {}).items()):
        if thr is None or not np.isfinite(thr):
            continue
        for a in (ax, ax2):
            a.axvline(thr, color="0.2", lw=0.9, ls=styles[i % len(styles)], alpha=0.8,
                      label=f"{name} (t={thr:.3f})" if a is ax2 else None)
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=6.5)
    ax2.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=6.5)
    ax2.set_xlim(0, 1)
    return fig


@_styled
def subgroups(table: pd.DataFrame, *, metric: str = "value", metric_label: str = "Metric", min_size: int | None = None,
              title: str | None = None) -> Figure:
    """Forest plot of one metric per subgroup with its 95% CI; groups below ``min_size`` are drawn hollow and grey.

    ``table`` columns: ``attribute``, ``group``, ``n``, ``<metric>``, optional ``lo`` / ``hi`` and ``small`` (bool).
    """
    t = table.reset_index(drop=True)
    n = len(t)
    fig, ax = _subplots(width=6.2, height=1.6 + 0.28 * max(n, 1))
    if n == 0:
        ax.text(0.5, 0.5, "no subgroup met the reporting criteria", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title or f"{metric_label} by subgroup")
        return fig
    small = t["small"].to_numpy(dtype=bool) if "small" in t else (
        t["n"].to_numpy() < min_size if min_size else np.zeros(n, dtype=bool))
    y = np.arange(n)[::-1]
    attrs = list(dict.fromkeys(t["attribute"].astype(str)))
    for k, attr in enumerate(attrs):
        rows = np.flatnonzero(t["attribute"].astype(str).to_numpy() == attr)
        col = color(k)
        for r in rows:
            v = float(t.loc[r, metric])
            c = "0.6" if small[r] else col
            if "lo" in t and "hi" in t and np.isfinite(t.loc[r, "lo"]) and np.isfinite(t.loc[r, "hi"]):
                ax.plot([t.loc[r, "lo"], t.loc[r, "hi"]], [y[r], y[r]], color=c, lw=1.3)
            if np.isfinite(v):
                ax.plot(v, y[r], "o", ms=5, color=c, mfc="white" if small[r] else c)
            else:
                ax.text(0.01, y[r], "not estimated (too few images)" if small[r] else "undefined in this group",
                        transform=ax.get_yaxis_transform(),
                        va="center", fontsize=6.5, color="0.45", style="italic")
    labels = [f"{a} = {g}  (n={int(m)}){' *' if s else ''}"
              for a, g, m, s in zip(t["attribute"], t["group"], t["n"], small, strict=True)]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel(metric_label + " (95% CI)")
    ax.set_title(title or f"{metric_label} by subgroup")
    if small.any():
        ax.plot([], [], "o", ms=5, color="0.6", mfc="white",
                label=f"* fewer than {min_size or 'the minimum number of'} images: not interpretable")
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / max(n, 1)), fontsize=6.5)
    return fig


@_styled
def leaderboard(table: pd.DataFrame, *, metric: str = "auc", metric_label: str = "ROC AUC",
                title: str | None = None, bounded: bool = True) -> Figure:
    """Methods ranked by one metric with 95% CI whiskers. ``table`` columns: ``method``, ``<metric>``,
    optional ``<metric>_lo`` / ``<metric>_hi``."""
    t = table.sort_values(metric, ascending=True, na_position="first").reset_index(drop=True)
    fig, ax = _subplots(width=6.0, height=1.5 + 0.35 * max(len(t), 1))
    y = np.arange(len(t))
    v = t[metric].to_numpy(dtype=float)
    lo_c, hi_c = f"{metric}_lo", f"{metric}_hi"
    if lo_c in t and hi_c in t:
        err = np.vstack([v - t[lo_c].to_numpy(dtype=float), t[hi_c].to_numpy(dtype=float) - v])
        ax.errorbar(v, y, xerr=np.clip(np.nan_to_num(err), 0, None), fmt="none", ecolor="0.35", lw=1.1, capsize=3)
    ax.scatter(v, y, color=[color(i) for i in range(len(t))][::-1], zorder=3, s=28)
    for yi, vi in zip(y, v, strict=True):
        if np.isfinite(vi):
            ax.annotate(f"{vi:.3f}", (vi, yi), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=6.5)
    ax.set_yticks(y, t["method"].astype(str))
    low = np.nanmin(np.concatenate([v, t[lo_c].to_numpy(dtype=float) if lo_c in t else v]))
    if bounded and np.isfinite(low):  # a proportion: the axis ends at 1 (the annotations sit above the dots)
        ax.set_xlim(max(0.0, low - 0.05), 1.0)
    ax.set_xlabel(metric_label + " on test (95% CI)")
    ax.set_title(title or f"Methods ranked by {metric_label}")
    ax.margins(y=0.25)
    return fig


@_styled
def error_gallery(images: Sequence[np.ndarray | None], captions: Sequence[str], *,
                  title: str = "Most confident errors on test", ncols: int = 4) -> Figure:
    """Thumbnails of misclassified images, each captioned (true, predicted, confidence); ``None`` marks an image
    that could not be read."""
    n = max(len(images), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _subplots(nrows, ncols, width=1.75 * ncols + 0.4, height=2.0 * nrows + 0.6, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(images):
            continue
        img = images[k]
        if img is None:
            ax.text(0.5, 0.5, "image not readable", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        else:
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(captions[k], fontsize=6.5, pad=2)
    fig.suptitle(title, fontsize=9.5)
    return fig


# ---- participant flow (STARD 2015 item 19) --------------------------------------------------------------------
def _box(ax, x: float, y: float, text: str, *, edge: str = "#0072B2", face: str = "#eef5fb", ha: str = "center"
         ) -> None:
    ax.text(x, y, text, ha=ha, va="center", fontsize=7, linespacing=1.35,
            bbox={"boxstyle": "round,pad=0.5", "facecolor": face, "edgecolor": edge, "linewidth": 0.9})


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 0.9})


@_styled
def participant_flow(source: str, excluded: Sequence[str], analysed: str, parts: Sequence[tuple[str, str]], *,
                     title: str = "Flow of images through the study") -> Figure:
    """A STARD-style flow diagram: the source box, an exclusions box with one line per reason, the analysed box,
    and one box per split (``parts``: (name, text) pairs, text holding images, patients and classes)."""
    fig, ax = _subplots(width=6.4, height=4.6)
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _box(ax, 0.33, 0.9, source)
    _arrow(ax, (0.33, 0.84), (0.33, 0.6))
    lines = [textwrap.fill(textwrap.shorten(e, 120), 40, subsequent_indent="   ") for e in excluded[:4]]
    if len(excluded) > 4:  # the figure stays readable; the flow table beside it lists every reason
        lines.append(f"... {len(excluded) - 4} more reason(s): see the table")
    ex_text = "Excluded:\n" + ("\n".join(lines) if lines else "none")
    _box(ax, 0.58, 0.72, ex_text, edge="#D55E00", face="#fdf0e8", ha="left")
    _arrow(ax, (0.33, 0.72), (0.56, 0.72))
    _box(ax, 0.33, 0.54, analysed)
    n = max(len(parts), 1)
    xs = [(i + 0.5) / n for i in range(n)]
    for x, (name, text) in zip(xs, parts, strict=False):
        _arrow(ax, (0.33, 0.49), (x, 0.33))
        _box(ax, x, 0.18, f"{name}\n{text}", edge="#009E73", face="#e9f6f1")
    ax.set_title(title)
    return fig


@_styled
def retrieval_grid(rows: Sequence[Sequence[tuple[np.ndarray | None, str]]], *,
                   title: str = "Most similar training images") -> Figure:
    """One row per query: the query image, then its nearest training images, each ``(image, caption)``;
    ``None`` marks an image that could not be read."""
    nrows = max(len(rows), 1)
    ncols = max((len(r) for r in rows), default=1)
    fig, axes = _subplots(nrows, ncols, width=1.45 * ncols + 0.3, height=1.75 * nrows + 0.6, squeeze=False)
    for i, ax_row in enumerate(axes):
        for j, ax in enumerate(ax_row):
            ax.set_axis_off()
            if i >= len(rows) or j >= len(rows[i]):
                continue
            img, caption = rows[i][j]
            if img is None:
                ax.text(0.5, 0.5, "image not readable", ha="center", va="center", fontsize=6.5,
                        transform=ax.transAxes)
            else:
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            if j == 0:  # the query: framed in the warning colour
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_edgecolor(PALETTE[1])
                    spine.set_linewidth(1.6)
            ax.set_title(caption, fontsize=6, pad=2)
    fig.suptitle(title, fontsize=9.5)
    return fig


# ---- label efficiency ----------------------------------------------------------------------------------------
LABEL_EFFICIENCY_NOTE = ("Test figures describe the curve; they chose nothing (hyperparameters and ensemble members "
                         "were chosen once, on the full training pool).")


@_styled
def label_efficiency(summary: pd.DataFrame, *, metric_label: str = "test ROC AUC",
                     title: str = "Label efficiency (mean \u00b1 sd over seeds)") -> Figure:
    """Test ``metric_label`` against training-set size, one line per method, error bars = sd over seeds.

    ``summary`` (see :func:`breastclip.report.label_efficiency.curve_summary`): ``method``, ``budget`` ("shots" or
    "fraction"), ``value``, ``n_train``, ``mean``, ``sd``, ``n_seeds``. Shots and fractions are different designs
    (class-balanced vs the pool's own class mix), so each gets its own panel on a shared y axis: images per class
    for shots, training images for fractions (each tick says the fraction; 100 % is the leaderboard's fit).
    """
    kinds = [k for k in ("shots", "fraction") if (summary["budget"] == k).any()]
    fig, axes = _subplots(1, max(1, len(kinds)), width=3.4 * max(1, len(kinds)) + 0.6, height=3.9, sharey=True,
                          squeeze=False)
    names = sorted(summary["method"].astype(str).unique())
    for ax, kind in zip(axes[0], kinds, strict=False):
        part = summary[summary["budget"] == kind]
        for i, name in enumerate(names):
            g = part[part["method"].astype(str) == name].sort_values("value")
            g = g[np.isfinite(g["mean"].to_numpy(dtype=float))]
            if not len(g):
                continue
            x = g["value"] if kind == "shots" else g["n_train"]
            ax.errorbar(x, g["mean"], yerr=g["sd"].fillna(0.0), marker="o", ms=3.5, lw=1.2, capsize=2.5,
                        color=color(i), label=name)
        xs = sorted(part["value"].unique())
        if kind == "shots":
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.set_xlabel("training images per class (shots; class-balanced)")
            per = part["n_train"].to_numpy(dtype=float) / part["value"].to_numpy(dtype=float)
            k = int(round(float(np.nanmax(per)))) if len(per) else 0
            ax.set_title(f"Shots: n images of each of {k} classes", fontsize=8.5)
        else:
            n = part.groupby("value")["n_train"].first()
            ax.set_xscale("log")
            ax.set_xticks(list(n.to_numpy(dtype=float)), [f"{v:.0%}\n{int(n[v])}" for v in n.index])
            ax.minorticks_off()
            ax.set_xlabel("training images (share of the training pool; its class mix)")
            ax.set_title("Fractions: 100 % = the leaderboard's fit", fontsize=8.5)
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    axes[0][0].set_ylabel(metric_label)
    legend = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    if legend:
        axes[0][-1].legend(list(legend.values()), list(legend), loc="lower right", fontsize=6.5)
    width = int(fig.get_figwidth() * 13)  # characters that fit at this size
    fig.suptitle(f"{title}\n{textwrap.fill(LABEL_EFFICIENCY_NOTE, width)}", fontsize=8.5)
    return fig
