"""Renderers of the run's leaderboard (computed once by :mod:`breastclip.evaluation.leaderboard`): the Markdown
file and the terminal table. They show the table as it is: same rows, same order, same selected method."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.evaluation.leaderboard import (
    LEADERBOARD_METRICS,
    OK,
    THRESHOLD_FREE,
    finite_float,
    is_seeded,
    metric_column,
    pooled_text,
    seed_pooled,
    selected_method,
    selection_text,
    threshold_text,
)
from breastclip.report.markdown import md_cell, md_text

METRIC_LABELS = {"roc_auc": "AUC", "average_precision": "AP", "accuracy": "Acc", "balanced_accuracy": "Bal. acc",
                 "f1_macro": "F1 (macro)", "sensitivity": "Sens", "specificity": "Spec",
                 "precision_macro": "Prec (macro)", "recall_macro": "Recall (macro)"}

__all__ = ["METRIC_LABELS", "display_rows", "fmt_ci", "rich_table", "to_markdown"]



def fmt_ci(est, lo, hi, digits: int = 3) -> str:
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "n/a"
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def metric_label(metric: str) -> str:
    """``test AUC``; ``test Acc@argmax`` for a metric of the argmax decision."""
    return f"test {METRIC_LABELS.get(metric, metric)}" + ("" if metric in THRESHOLD_FREE else "@argmax")


def selection_label(board: pd.DataFrame) -> str:
    metric = str(board.attrs.get("selection_metric") or
                 (board["selection_metric"].iloc[0] if "selection_metric" in board and len(board) else "val_?"))
    where, _, name = metric.partition("_")
    return f"{where} {METRIC_LABELS.get(name, name)} (selection)"


def _vs_cell(r, baseline: str | None, fmt) -> str:
    if baseline is not None and str(r["method"]) == baseline:
        return "selected" if bool(r.get("selected")) else "baseline"
    d = finite_float(r.get("vs_selected_diff"))
    if d is None:
        return ""
    p = finite_float(r.get("vs_selected_p_holm"))
    return fmt(d, p if p is not None else finite_float(r.get("vs_selected_p")))


def display_rows(board: pd.DataFrame, metrics: Sequence[str] = LEADERBOARD_METRICS) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows: selection figure, status, test metrics [95% CI], the operating point on val and
    test, and the paired test difference to the selected method."""
    shown = [m for m in metrics if metric_column(m) in board.columns]
    primary = str(board.attrs.get("primary") or "roc_auc")
    policy = board.attrs.get("operating_point") or (
        str(board["operating_point"].iloc[0]) if "operating_point" in board and len(board) else None)
    extra = [c for c in ("backbone", "head") if c in board.columns]
    seeded = is_seeded(board)
    pooled = [m for m in ("roc_auc", "accuracy") if m in shown] if seeded else []
    header = ["#", "method", *extra, "selected", "status", selection_label(board)]
    if seeded:  # the method's figures over seeds (what ranks it) beside this seed row's own
        header = header[:-1] + [selection_label(board).replace("(selection)", "mean ± sd over seeds (selection)"),
                                f"this seed's {selection_label(board).replace(' (selection)', '')}"]
        header += [f"{metric_label(m)} mean ± sd over seeds" for m in pooled]
    header += [metric_label(m) for m in shown]
    if policy:
        header += [f"threshold@{policy}", f"Sens@{policy} val / test", f"Spec@{policy} val / test"]
    header.append(f"Δ test {METRIC_LABELS.get(primary, primary)} vs selected (p)")
    baseline = board.attrs.get("baseline")
    rows = []
    for _, r in board.iterrows():
        cells = [str(r["rank"]), str(r["method"]), *[str(r[c]) if r[c] is not None else "" for c in extra],
                 "yes" if bool(r["selected"]) else "", str(r["status"])]
        if seeded:
            cells.append(pooled_text(r, "selection_value", own_figure=False))
        cells.append(_selection_cell(r))
        cells += [pooled_text(r, metric_column(m), own_figure=False) for m in pooled]
        cells += [fmt_ci(finite_float(r[metric_column(m)]), finite_float(r.get(f"{metric_column(m)}_ci_lo")),
                         finite_float(r.get(f"{metric_column(m)}_ci_hi"))) for m in shown]
        if policy:
            cells += [threshold_text(r.get(f"threshold@{policy}")),
                      _pair(r.get(f"val_sensitivity@{policy}"), r.get(f"test_sensitivity@{policy}")),
                      _pair(r.get(f"val_specificity@{policy}"), r.get(f"test_specificity@{policy}"))]
        lo, hi = finite_float(r.get("vs_selected_ci_lo")) or 0, finite_float(r.get("vs_selected_ci_hi")) or 0
        cells.append(_vs_cell(r, baseline, lambda d, p, lo=lo, hi=hi: f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                              + (f" (p={p:.3g})" if p is not None else "")))
        rows.append(cells)
    return header, rows


def _selection_cell(r) -> str:
    v = finite_float(r.get("selection_value"))
    if v is None:
        return "n/a"
    sd = finite_float(r.get("selection_sd"))
    if sd is not None and finite_float(r.get("selection_ci_lo")) is None:
        return f"{v:.3f} ± {sd:.3f}"
    return fmt_ci(v, finite_float(r.get("selection_ci_lo")), finite_float(r.get("selection_ci_hi")))


def _pair(a, b) -> str:
    a, b = finite_float(a), finite_float(b)
    return "n/a" if a is None and b is None else f"{'n/a' if a is None else f'{a:.3f}'} / " \
                                                  f"{'n/a' if b is None else f'{b:.3f}'}"


def to_markdown(board: pd.DataFrame, *, title: str = "Leaderboard") -> str:
    header, rows = display_rows(board)
    lines = [f"# {md_text(title)}", "", f"*{RESEARCH_ONLY}*", "", f"**{md_text(selection_text(board))}**", "",
             "| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    policy = board.attrs.get("operating_point")
    lines += ["", "Selection: the method with the best selection figure among those whose status is ok; the test "
              "split is never used to choose. Test metrics are shown beside it, as estimates with 95% bootstrap "
              "confidence intervals (patients resampled when patient ids exist). Columns marked @argmax are at the "
              "most-probable-class decision"
              + (f"; columns marked @{policy} at the threshold frozen on validation by the '{policy}' rule "
                 "(\"not attainable\": the rule cannot be met on validation and is not applied)" if policy else "")
              + ". The last column is the paired difference on the same test images to the selected method, with "
              "the Holm-adjusted p-value."]
    if is_seeded(board):
        lines[-1] += (f" Seeds {list(board.attrs.get('seeds') or sorted(set(board['seed'].dropna().astype(int))))}: "
                      "one row per method and seed; methods are ranked and selected by their mean selection figure "
                      "over seeds (a method is ok only when every seed is), never by a seed row's test figures; the "
                      "selected row is the master seed's fit, the one model that predict, Grad-CAM and the gate use. "
                      "Mean ± sd over seeds per method: seeds.md.")
    return "\n".join(lines) + "\n"


#: Columns of the terminal table (the full set with CIs is in leaderboard.md / .csv and the report).
TERMINAL_METRICS = ("roc_auc",)


def rich_table(board: pd.DataFrame, *, title: str = "Leaderboard"):
    """A compact terminal table (fits about 100 columns): the selection figure, test AUC with its 95% CI,
    sensitivity / specificity at the frozen operating point on test, the paired difference to the selected method.
    The full table is leaderboard.md."""
    from rich.table import Table

    primary = str(board.attrs.get("primary") or "roc_auc")
    policy = board.attrs.get("operating_point")
    backbones = sorted({str(b) for b in board.get("backbone", []) if b and not str(b).startswith("(")})
    if len(backbones) == 1:
        title = f"{title}, {backbones[0]} embeddings"
    table = Table(title=title, caption=RESEARCH_ONLY, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("method", overflow="fold", min_width=12)
    table.add_column(selection_label(board).replace(" (selection)", " mean±sd over seeds*" if is_seeded(board)
                                                    else "*"), justify="right", no_wrap=True)
    shown = [m for m in TERMINAL_METRICS if metric_column(m) in board.columns]
    for m in shown:
        table.add_column(metric_label(m) + " (95% CI)", justify="right", no_wrap=True)
    if policy:
        table.add_column(f"test Sens/Spec@{policy}", justify="right", no_wrap=True)
    table.add_column(f"Δ test {METRIC_LABELS.get(primary, primary)} (p)", justify="right", no_wrap=True)
    baseline = board.attrs.get("baseline")
    seeded = is_seeded(board)
    for _, r in board.iterrows():
        label = str(r["method"])
        if str(r.get("backbone", "")).startswith("("):  # the end-to-end CNN baseline
            label += " (CNN)"
        if bool(r["selected"]):
            label = f"[bold]{label}[/bold] (selected)"
        elif r["status"] != OK:
            label += " [red](learned nothing)[/red]"
        v = finite_float(r.get("selection_value"))
        cells = [str(r["rank"]), label, "n/a" if v is None else f"{v:.3f}"]
        if seeded:  # what ranks a seeded board: the method's mean over seeds
            mean, sd, _ = seed_pooled(r, "selection_value")
            cells[2] = "n/a" if mean is None else f"{mean:.3f}" + ("" if sd is None else f"±{sd:.3f}")
        for m in shown:
            c = metric_column(m)
            v = finite_float(r[c])
            lo, hi = finite_float(r.get(f"{c}_ci_lo")), finite_float(r.get(f"{c}_ci_hi"))
            cells.append("n/a" if v is None else f"{v:.3f}" + (f" ({lo:.2f}-{hi:.2f})" if lo is not None
                                                                and hi is not None else ""))
        if policy:
            se, sp = finite_float(r.get(f"test_sensitivity@{policy}")), finite_float(r.get(f"test_specificity@{policy}"))
            cells.append("not attainable" if finite_float(r.get(f"threshold@{policy}")) is None
                         else f"{se:.2f}/{sp:.2f}" if se is not None and sp is not None else "n/a")
        cells.append(_vs_cell(
            r, baseline, lambda d, p: f"{d:+.3f}" + ("" if p is None else " (<0.001)" if p < 0.001 else f" ({p:.2f})")))
        table.add_row(*cells)
    return table


def summary_lines(board: pd.DataFrame) -> list[str]:
    """What the console prints under the table: the verdict, the operating point, and each flagged method."""
    lines = [selection_text(board)]
    sel = selected_method(board)
    policy = board.attrs.get("operating_point")
    if sel is not None and policy and f"threshold@{policy}" in board.columns:
        r = board[board["method"] == sel].iloc[0]
        t = threshold_text(r.get(f"threshold@{policy}"))
        if t == "not attainable":
            lines.append(f"operating point ({policy}): not attainable on validation; predict decides by argmax")
        else:
            pos = r.get("positive_class")
            vs = f"'{pos}' vs rest, " if isinstance(pos, str) and pos else ""
            lines.append(f"operating point ({vs}{policy}, frozen on validation): threshold {t}; sensitivity "
                         f"{_pair(r.get(f'val_sensitivity@{policy}'), r.get(f'test_sensitivity@{policy}'))}, "
                         f"specificity {_pair(r.get(f'val_specificity@{policy}'), r.get(f'test_specificity@{policy}'))}"
                         " (val / test)")
    flagged = board[board["status"] != OK]
    if is_seeded(board):  # one line per method (its pooled status names the seed), not one per seed row
        flagged = flagged.drop_duplicates("base_method").assign(method=lambda d: d["base_method"])
    for _, r in flagged.iterrows():
        lines.append(f"learned nothing: {r['method']}: {r['status']}")
    return lines
