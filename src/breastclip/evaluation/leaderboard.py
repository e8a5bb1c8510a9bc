"""The run's one leaderboard: computed once here, from evaluations and selection figures; every output renders it.

Selection protocol: the recommended method is the one with the best selection figure, ``evaluation.primary_metric``
measured on the **validation** split (``val_<metric>``, from :attr:`Evaluation.val_headline`) or by
cross-validation over train+val (``cv_<metric>``, :class:`~breastclip.evaluation.selection.SelectionScore` values
handed in by the CV engine), among the methods whose ``status`` is ``ok`` (:mod:`breastclip.evaluation.status`).
The test split never chooses anything: its metrics are shown beside the selection figure, with their CIs.

Columns of :func:`build_leaderboard` (one row per method)::

    rank, method, <info columns: backbone, head, ...>,
    selected                    True for at most one row (none when no method is ok)
    status                      "ok" or why the method learned nothing usable
    selection_metric            e.g. "val_roc_auc", "cv_roc_auc"
    selection_value, selection_sd, selection_ci_lo, selection_ci_hi, selection_source, selection_n_folds
    test_<metric>, test_<metric>_ci_lo, test_<metric>_ci_hi
                                threshold-free metrics (roc_auc, average_precision) by name; the others are at the
                                argmax decision and say so: test_accuracy@argmax, test_sensitivity@argmax, ...
    operating_point, positive_class
                                the frozen policy (e.g. "youden", one-vs-rest for the positive class);
                                threshold@<policy> (NaN: not attainable on validation, never applied),
    val_sensitivity@<policy>, val_specificity@<policy>, test_sensitivity@<policy> (+ _ci_lo/_ci_hi), ...
    n_test
    vs_selected_diff, _ci_lo, _ci_hi, _p, _p_holm, _test
                                paired test-split difference to the comparison baseline (the selected method,
                                else the first row) in the primary metric

Rows: methods with status ``ok`` first, each group by selection value (best first, missing last); the selected
method, when there is one, is row 1. ``attrs``: ``selected`` (method or None), ``selection_metric``, ``primary``,
``operating_point``, ``baseline`` (of the comparisons), ``no_method_learned`` (bool). Plain pandas: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from breastclip.evaluation.calibration import LOG_T_BOUNDS
from breastclip.evaluation.selection import SelectionScore
from breastclip.evaluation.status import OK, chance_level, losses_of, method_status
from breastclip.evaluation.summary import Evaluation
from breastclip.predictions import proba_of, y_true_index

#: Test metrics shown, in order, when the evaluations have them.
LEADERBOARD_METRICS = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1_macro",
                       "sensitivity", "specificity")
#: Metrics that need no decision threshold; every other headline metric is at the argmax decision.
THRESHOLD_FREE = frozenset({"roc_auc", "average_precision"})
#: What every output says when no method is ok.
NO_METHOD_LEARNED = "no method learned this task"
VS = ("diff", "ci_lo", "ci_hi", "p", "p_holm", "test")


def metric_column(metric: str, split: str = "test") -> str:
    """``test_roc_auc``; ``test_accuracy@argmax`` for a metric of the argmax decision."""
    return f"{split}_{metric}" + ("" if metric in THRESHOLD_FREE else "@argmax")


def val_selection(evaluations: Mapping[str, Evaluation], metric: str) -> dict[str, SelectionScore]:
    """Each method's validation figure of ``metric`` (with its bootstrap CI) as a :class:`SelectionScore`."""
    out = {}
    for label, ev in evaluations.items():
        h = ev.val_headline.get(metric) or {}
        out[label] = SelectionScore(metric=f"val_{metric}", value=_f(h.get("estimate")), source="val",
                                    ci_lo=_f(h.get("ci_lo")), ci_hi=_f(h.get("ci_hi")))
    return out


def method_statuses(
    evaluations: Mapping[str, Evaluation],
    predictions: pd.DataFrame,
    selection: Mapping[str, SelectionScore],
    *,
    histories: Mapping[str, Sequence[Mapping]] | None = None,
) -> dict[str, str]:
    """``status`` of every method (:func:`breastclip.evaluation.status.method_status`) from its prediction rows."""
    out = {}
    methods = predictions["method"].astype(str)
    for label, ev in evaluations.items():
        rows = predictions[methods == label]
        val = rows[rows["split"] == ev.settings.get("val_split", "val")]
        test = rows[rows["split"] == ev.settings.get("test_split", "test")]
        k = len(ev.classes)
        pos = ev.classes.index(ev.positive_class) if ev.positive_class in ev.classes else None
        metric = selection[label].metric.split("_", 1)[1] if label in selection else ""
        chance = chance_level(metric, y_true_index(val), k, pos) if len(val) else None
        auc = ev.val_headline.get("roc_auc") or {}
        sel = selection.get(label)
        val_auc = None  # under cross-validation the validation rows were fitted on: their AUC says nothing
        if sel is None or sel.source == "val":
            val_auc = SelectionScore("val_roc_auc", _f(auc.get("estimate")), ci_lo=_f(auc.get("ci_lo")),
                                     ci_hi=_f(auc.get("ci_hi")))
        temp = (ev.calibration or {}).get("temperature")
        out[label] = method_status(
            classes=ev.classes, p_val=proba_of(val), p_test=proba_of(test), selection=selection.get(label),
            chance=chance, val_auc=val_auc, temperature=None if temp is None else float(temp),
            temperature_bounds=(float(np.exp(LOG_T_BOUNDS[0])), float(np.exp(LOG_T_BOUNDS[1]))),
            losses=losses_of((histories or {}).get(label)))
    return out


def build_leaderboard(
    evaluations: Mapping[str, Evaluation],
    *,
    selection: Mapping[str, SelectionScore],
    statuses: Mapping[str, str],
    comparisons: pd.DataFrame | None = None,
    info: Mapping[str, Mapping[str, object]] | None = None,
    primary: str = "roc_auc",
    operating_point: str | None = None,
    metrics: Sequence[str] = LEADERBOARD_METRICS,
) -> pd.DataFrame:
    """One row per method: selection figure, status, test metrics with CIs, the frozen operating point on val
    and test, and the paired comparison to the selected method (see the module docstring)."""
    rows = []
    for label, ev in evaluations.items():
        sel = selection.get(label) or SelectionScore(metric=f"val_{primary}", value=None)
        row: dict = {"method": label, **(dict(info.get(label, {})) if info else {}),
                     "selected": False, "status": statuses.get(label, OK),
                     "selection_metric": sel.metric, "selection_value": _f(sel.value), "selection_sd": _f(sel.sd),
                     "selection_ci_lo": _f(sel.ci_lo), "selection_ci_hi": _f(sel.ci_hi),
                     "selection_source": sel.source, "selection_n_folds": sel.n_folds}
        for m in metrics:
            h = ev.headline.get(m)
            if h is None:
                continue
            col = metric_column(m)
            row[col], row[f"{col}_ci_lo"], row[f"{col}_ci_hi"] = (_f(h.get("estimate")), _f(h.get("ci_lo")),
                                                                 _f(h.get("ci_hi")))
        if operating_point:
            row.update(_operating_point_columns(ev, operating_point))
        row["n_test"] = (ev.n.get(ev.settings.get("test_split", "test")) or {}).get("images")
        rows.append(row)
    board = pd.DataFrame(rows)
    board.attrs.update({"selected": None, "selection_metric": None, "primary": primary, "baseline": None,
                        "operating_point": operating_point, "no_method_learned": True})
    if board.empty:
        return board
    value = board["selection_value"].astype(float)
    order = np.lexsort((np.where(value.notna(), -value.fillna(0.0), np.inf), (board["status"] != OK).to_numpy()))
    board = board.iloc[order].reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    first = board.iloc[0]
    selected = str(first["method"]) if first["status"] == OK and _f(first["selection_value"]) is not None else None
    if selected is not None:
        board.loc[0, "selected"] = True
    board["selected"] = board["selected"].astype(bool)
    baseline = selected or str(first["method"])
    for c in VS:
        board[f"vs_selected_{c}"] = None
    if comparisons is not None and not comparisons.empty:
        cmp = comparisons[(comparisons["metric"] == primary) & (comparisons["baseline"] == baseline)]
        for _, r in cmp.iterrows():
            i = board.index[board["method"] == r["method"]]
            if len(i):
                board.loc[i, [f"vs_selected_{c}" for c in VS]] = [
                    _f(r["diff"]), _f(r["ci_lo"]), _f(r["ci_hi"]), _f(r["p_value"]), _f(r.get("p_holm")), r["test"]]
    board.attrs.update({"selected": selected, "selection_metric": str(first["selection_metric"]),
                        "baseline": baseline, "no_method_learned": selected is None})
    return board


def _operating_point_columns(ev: Evaluation, policy: str) -> dict:
    out: dict = {"operating_point": policy, "positive_class": ev.positive_class, f"threshold@{policy}": None}
    ops = ev.operating_points
    row = ops[ops["policy"] == policy] if ops is not None and len(ops) else None
    if row is None or row.empty:
        return out
    r = row.iloc[0]
    out[f"threshold@{policy}"] = _f(r.get("threshold"))
    for split, prefix in (("val", "val_"), ("test", "")):
        for rate in ("sensitivity", "specificity"):
            out[f"{split}_{rate}@{policy}"] = _f(r.get(f"{prefix}{rate}"))
    for rate in ("sensitivity", "specificity"):
        out[f"test_{rate}@{policy}_ci_lo"] = _f(r.get(f"{rate}_ci_lo"))
        out[f"test_{rate}@{policy}_ci_hi"] = _f(r.get(f"{rate}_ci_hi"))
    return out


def leaderboard_for(
    evaluations: Mapping[str, Evaluation],
    predictions: pd.DataFrame,
    *,
    primary: str = "roc_auc",
    operating_point: str | None = None,
    selection: Mapping[str, SelectionScore] | None = None,
    histories: Mapping[str, Sequence[Mapping]] | None = None,
    comparisons: pd.DataFrame | None = None,
    info: Mapping[str, Mapping[str, object]] | None = None,
) -> pd.DataFrame:
    """Selection figures (validation unless ``selection`` is given), statuses and the board in one call."""
    selection = dict(selection) if selection is not None else val_selection(evaluations, primary)
    statuses = method_statuses(evaluations, predictions, selection, histories=histories)
    return build_leaderboard(evaluations, selection=selection, statuses=statuses, comparisons=comparisons,
                             info=info, primary=primary, operating_point=operating_point)


def selected_method(board: pd.DataFrame) -> str | None:
    """The selected row's method (also from a leaderboard read back from CSV), or None."""
    if board is None or board.empty or "selected" not in board.columns:
        return None
    sel = board[board["selected"].astype(str).str.lower().isin(("true", "1"))]
    return str(sel["method"].iloc[0]) if len(sel) else None


def _f(v: object) -> float | None:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def threshold_text(threshold: object, missing: str = "not attainable") -> str:
    """A frozen threshold with enough digits to tell it from 0 and 1 (``0.412``, ``0.99987``, never ``1.000``);
    ``missing`` for a policy with no threshold (not attainable on validation)."""
    t = _f(threshold)
    if t is None:
        return missing
    text = f"{t:.3f}"
    if text in ("0.000", "1.000", "-0.000") and t not in (0.0, 1.0):
        distance = min(abs(t), abs(1.0 - t))
        digits = min(12, 3 - int(math.floor(math.log10(distance))))
        text = f"{t:.{digits}f}".rstrip("0")
    elif t in (0.0, 1.0):
        text = f"{t:.0f} (exactly)"
    return text


def selection_text(board: pd.DataFrame) -> str:
    """One sentence naming the selected method and how it was chosen, or saying that no method learned the task."""
    if board is None or board.empty:
        return "no method produced predictions"
    metric = str(board.attrs.get("selection_metric") or board["selection_metric"].iloc[0])
    sel = selected_method(board)
    if sel is None:
        return (f"{NO_METHOD_LEARNED}: no method is ok (see status), so none is selected or recommended")
    r = board[board["method"] == sel].iloc[0]
    fig = f"{float(r['selection_value']):.3f}"
    lo, hi, sd = _f(r.get("selection_ci_lo")), _f(r.get("selection_ci_hi")), _f(r.get("selection_sd"))
    if lo is not None and hi is not None:
        fig += f" [{lo:.3f}, {hi:.3f}]"
    elif sd is not None:
        fig += f" ± {sd:.3f}"
    where = "cross-validation over train+val" if metric.startswith("cv_") else "the validation split"
    return f"selected: {sel} (best {metric} = {fig}, chosen on {where}; the test split chose nothing)"


def with_selection(board: pd.DataFrame, method: str) -> pd.DataFrame:
    """The board with ``method`` selected (moved to row 1): a selection made upstream by the caller's own protocol
    (e.g. a report of a run whose leaderboard was computed elsewhere). Raises ValueError for an unknown method."""
    if method not in set(board["method"].astype(str)):
        raise ValueError(f"selected_method {method!r} is not in the leaderboard {board['method'].tolist()}")
    attrs = dict(board.attrs)
    first = board["method"].astype(str) == method
    out = pd.concat([board[first], board[~first]], ignore_index=True)
    out["selected"] = out["method"].astype(str) == method
    out["rank"] = range(1, len(out) + 1)
    out.attrs.update({**attrs, "selected": method, "no_method_learned": False})
    return out
