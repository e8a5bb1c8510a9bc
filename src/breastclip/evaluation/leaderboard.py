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
``operating_point``, ``baseline`` (of the comparisons), ``no_method_learned`` (bool), ``seeds`` and
``master_seed`` (see below). Plain pandas: no torch.

**Seeds** (``experiment.seeds``: every method runs once per seed, labelled ``<method>.seed<k>``, see
:func:`seed_label`). The board keeps one row per seed (``method`` is the row's label, the name of its fitted model
in the results folder), but ranks and selects *methods*, never seed rows: a method's selection figure is the mean
over its seeds of each seed's selection figure; a method is ``ok`` only when every seed is ok and present; the
selected method is the best ok method by that mean, and the selected ROW is its **master seed's** fit
(``experiment.seed`` when it is one of the seeds, else the first seed), because predict, Grad-CAM and the gate need
one fitted model. Rows of a method stay together, master seed first; no seed row is ever preferred by its test
figures. Extra columns of a seeded board (the same on every row of a method, but ``seed`` and ``seed_status``)::

    base_method                 the method's name without the seed suffix
    seed                        this row's seed
    seed_status                 this row's own status; ``status`` is the method's pooled one ("ok", or which
                                seed was flagged or missing, and why)
    n_seeds                     seeds with a result
    selection_value_seeds_mean, selection_value_seeds_sd
                                mean and sd (ddof 1) over seeds of the selection figure (the ranking key)
    <test column>_seeds_mean, <test column>_seeds_sd
                                the same for every test metric column (``test_roc_auc_seeds_mean``,
                                ``test_accuracy@argmax_seeds_sd``, ``test_sensitivity@<policy>_seeds_mean`` ...)
"""

from __future__ import annotations

import math
import re
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
#: The same, opening a sentence.
NO_METHOD_LEARNED_SENTENCE = NO_METHOD_LEARNED[0].upper() + NO_METHOD_LEARNED[1:]
VS = ("diff", "ci_lo", "ci_hi", "p", "p_holm", "test")
#: Suffix of a per-seed method label: ``<method>.seed<k>``.
_SEED_LABEL = re.compile(r"^(?P<method>.+)\.seed(?P<seed>-?\d+)$")
#: Suffix of the pooled columns of a seeded board.
SEEDS_MEAN, SEEDS_SD = "_seeds_mean", "_seeds_sd"


def seed_label(method: str, seed: int) -> str:
    """The label of ``method``'s run with ``seed``: ``<method>.seed<k>``."""
    return f"{method}.seed{int(seed)}"


def split_seed_label(label: str) -> tuple[str, int | None]:
    """``("svm", 1)`` for ``"svm.seed1"``; ``(label, None)`` for a label without a seed suffix."""
    m = _SEED_LABEL.match(label)
    return (m["method"], int(m["seed"])) if m else (label, None)


def seeds_of_labels(labels: Sequence[str]) -> list[int]:
    """The seeds of a seeded run's labels (every label ``<method>.seed<k>``, two seeds or more), else ``[]``: how a
    caller without the run's config (``breastclip report`` on a predictions table) knows to pool seeds."""
    parts = [split_seed_label(str(label)) for label in labels]
    seeds = sorted({s for _, s in parts if s is not None})
    return seeds if parts and all(s is not None for _, s in parts) and len(seeds) > 1 else []


def master_seed_of(seeds: Sequence[int], seed: int | None) -> int | None:
    """The seed whose fitted model a seeded run deploys: ``seed`` (``experiment.seed``) when it is one of
    ``seeds``, else the first seed; None without seeds."""
    if not seeds:
        return None
    return int(seed) if seed is not None and int(seed) in {int(s) for s in seeds} else int(seeds[0])


def metric_column(metric: str, split: str = "test") -> str:
    """``test_roc_auc``; ``test_accuracy@argmax`` for a metric of the argmax decision."""
    return f"{split}_{metric}" + ("" if metric in THRESHOLD_FREE else "@argmax")


def val_selection(evaluations: Mapping[str, Evaluation], metric: str) -> dict[str, SelectionScore]:
    """Each method's validation figure of ``metric`` (with its bootstrap CI) as a :class:`SelectionScore`."""
    out = {}
    for label, ev in evaluations.items():
        h = ev.val_headline.get(metric) or {}
        out[label] = SelectionScore(metric=f"val_{metric}", value=finite_float(h.get("estimate")), source="val",
                                    ci_lo=finite_float(h.get("ci_lo")), ci_hi=finite_float(h.get("ci_hi")))
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
            val_auc = SelectionScore("val_roc_auc", finite_float(auc.get("estimate")), ci_lo=finite_float(auc.get("ci_lo")),
                                     ci_hi=finite_float(auc.get("ci_hi")))
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
    seeds: Sequence[int] = (),
    master_seed: int | None = None,
) -> pd.DataFrame:
    """One row per method: selection figure, status, test metrics with CIs, the frozen operating point on val
    and test, and the paired comparison to the selected method (see the module docstring). With ``seeds`` (labels
    ``<method>.seed<k>``) one row per method and seed, ranked and selected by method over seeds, the selected row
    being the ``master_seed``'s (:func:`master_seed_of`)."""
    rows = []
    for label, ev in evaluations.items():
        sel = selection.get(label) or SelectionScore(metric=f"val_{primary}", value=None)
        row: dict = {"method": label, **(dict(info.get(label, {})) if info else {}),
                     "selected": False, "status": statuses.get(label, OK),
                     "selection_metric": sel.metric, "selection_value": finite_float(sel.value), "selection_sd": finite_float(sel.sd),
                     "selection_ci_lo": finite_float(sel.ci_lo), "selection_ci_hi": finite_float(sel.ci_hi),
                     "selection_source": sel.source, "selection_n_folds": sel.n_folds}
        for m in metrics:
            h = ev.headline.get(m)
            if h is None:
                continue
            col = metric_column(m)
            row[col], row[f"{col}_ci_lo"], row[f"{col}_ci_hi"] = (finite_float(h.get("estimate")), finite_float(h.get("ci_lo")),
                                                                 finite_float(h.get("ci_hi")))
        if operating_point:
            row.update(_operating_point_columns(ev, operating_point))
        row["n_test"] = (ev.n.get(ev.settings.get("test_split", "test")) or {}).get("images")
        rows.append(row)
    board = pd.DataFrame(rows)
    master = master_seed_of(seeds, master_seed)
    board.attrs.update({"selected": None, "selection_metric": None, "primary": primary, "baseline": None,
                        "operating_point": operating_point, "no_method_learned": True,
                        "seeds": [int(s) for s in seeds], "master_seed": master})
    if board.empty:
        return board
    if seeds:
        board = _pool_seeds(board, [int(s) for s in seeds], master)
        value = pd.to_numeric(board["selection_value" + SEEDS_MEAN], errors="coerce")
        group = board["base_method"].astype(str).to_numpy()
        is_master = (board["seed"] == master).fillna(False).to_numpy(dtype=bool) if master is not None else False
        within = np.where(is_master, -np.inf, board["seed"].astype("Float64").fillna(np.inf).to_numpy(dtype=float))
    else:
        value = board["selection_value"].astype(float)
        group = within = np.zeros(len(board))
    order = np.lexsort((within, group, np.where(value.notna(), -value.fillna(0.0), np.inf),
                        (board["status"] != OK).to_numpy()))
    board = board.iloc[order].reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    first = board.iloc[0]
    figure = first["selection_value" + SEEDS_MEAN] if seeds else first["selection_value"]
    selected = str(first["method"]) if first["status"] == OK and finite_float(figure) is not None else None
    if selected is not None and seeds and first["seed"] != master:
        selected = None  # the method's master-seed row is missing (its status says so); never another seed's
    if selected is not None:
        board.loc[0, "selected"] = True
    board["selected"] = board["selected"].astype(bool)
    baseline = selected or str(first["method"])
    board.attrs.update({"selected": selected, "selection_metric": str(first["selection_metric"]),
                        "baseline": baseline, "no_method_learned": selected is None})
    return attach_comparisons(board, comparisons)


def attach_comparisons(board: pd.DataFrame, comparisons: pd.DataFrame | None) -> pd.DataFrame:
    """Fill the board's ``vs_selected_*`` columns (in place, and return it) from the paired test comparisons of
    every method against ``attrs["baseline"]`` in ``attrs["primary"]``; None where a method has none. The
    comparisons need the baseline, which the board chooses: build the board, compare, then attach."""
    if board.empty:
        return board
    for c in VS:
        board[f"vs_selected_{c}"] = None
    if comparisons is not None and not comparisons.empty:
        primary, baseline = board.attrs.get("primary"), board.attrs.get("baseline")
        cmp = comparisons[(comparisons["metric"] == primary) & (comparisons["baseline"] == baseline)]
        for _, r in cmp.iterrows():
            i = board.index[board["method"] == r["method"]]
            if len(i):
                board.loc[i, [f"vs_selected_{c}" for c in VS]] = [
                    finite_float(r["diff"]), finite_float(r["ci_lo"]), finite_float(r["ci_hi"]),
                    finite_float(r["p_value"]), finite_float(r.get("p_holm")), r["test"]]
    return board


def _pool_seeds(board: pd.DataFrame, seeds: list[int], master: int | None) -> pd.DataFrame:
    """Add the pooled columns of a seeded board (module docstring): per method, mean and sd over its seeds, the
    pooled status (ok only when every seed is present and ok)."""
    parts = [split_seed_label(str(m)) for m in board["method"]]
    board = board.assign(base_method=[p[0] for p in parts], seed=pd.array([p[1] for p in parts], dtype="Int64"),
                         seed_status=board["status"])
    pooled = ["selection_value"] + [c for c in board.columns if c.startswith("test_") and not c.endswith(
        ("_ci_lo", "_ci_hi"))]
    new: dict[str, list] = {"n_seeds": [], "status": [], **{c + s: [] for c in pooled for s in (SEEDS_MEAN,
                                                                                                 SEEDS_SD)}}
    groups = board.groupby("base_method", sort=False).groups
    for base in board["base_method"]:
        g = board.loc[groups[base]]
        own = {int(s): str(st) for s, st in zip(g["seed"].dropna(), g.loc[g["seed"].notna(), "seed_status"],
                                                strict=True)}
        if g["seed"].isna().all():  # a label without a seed suffix: a method run once, pooled over itself
            flags = [str(st) for st in g["seed_status"] if st != OK]
        else:
            flags = [f"seed {s} flagged: {own[s]}" for s in seeds if s in own and own[s] != OK]
            flags += [f"seed {s}: no result (the method failed or was skipped with this seed)"
                      for s in seeds if s not in own]
        new["status"].append("; ".join(flags) if flags else OK)
        new["n_seeds"].append(len(g))
        for c in pooled:
            v = pd.to_numeric(g[c], errors="coerce").to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            new[c + SEEDS_MEAN].append(float(v.mean()) if len(v) else None)
            new[c + SEEDS_SD].append(float(v.std(ddof=1)) if len(v) > 1 else None)
    board = board.assign(**new)
    front = ["method", "base_method", "seed"]
    return board[front + [c for c in board.columns if c not in front]]


def seed_pooled(row: Mapping, column: str) -> tuple[float | None, float | None, float | None]:
    """``(mean over seeds, sd over seeds, this row's own value)`` of ``column`` in a row of a seeded board
    (mean and sd None on an unseeded board)."""
    return finite_float(row.get(column + SEEDS_MEAN)), finite_float(row.get(column + SEEDS_SD)), finite_float(row.get(column))


def is_seeded(board: pd.DataFrame) -> bool:
    """Whether the board pools seeds (it has the ``n_seeds`` / ``seed`` columns), also when read back from CSV."""
    return board is not None and "n_seeds" in board.columns and "seed" in board.columns


def pooled_text(row: Mapping, column: str, *, digits: int = 3, own_figure: bool = True) -> str:
    """``0.912 ± 0.004 over 3 seeds (seed 0: 0.915)``: the method's mean ± sd over seeds beside the row's own
    figure (left out when not ``own_figure``); just the row's figure on an unseeded board."""
    mean, sd, own = seed_pooled(row, column)
    if mean is None:
        return "n/a" if own is None else f"{own:.{digits}f}"
    n = int(finite_float(row.get("n_seeds")) or 0)
    text = f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "") + f" over {n} seed"
    text += "s" if n != 1 else ""
    seed = row.get("seed")
    if not own_figure:
        return text
    return text + (f" (seed {int(seed)}: {'n/a' if own is None else f'{own:.{digits}f}'})"
                   if seed is not None and not pd.isna(seed) else "")


def deployed_rows(board: pd.DataFrame) -> list[str] | None:
    """The labels of the master seed's rows of a seeded board (one fitted model per method: the rows the report
    details); None for an unseeded board. The master seed is ``attrs["master_seed"]``, else (a board read back from
    CSV) the selected row's seed, else the first seed."""
    if not is_seeded(board):
        return None
    seeds = pd.to_numeric(board["seed"], errors="coerce")
    master = board.attrs.get("master_seed")
    if master is None:
        sel = board[board["method"].astype(str) == (selected_method(board) or "")]
        master = int(sel["seed"].iloc[0]) if len(sel) else (int(seeds.min()) if seeds.notna().any() else None)
    keep = seeds.isna() | (seeds == master)
    return board.loc[keep, "method"].astype(str).tolist()


#: Leaderboard columns shown per method in the seeds table (those present), by the name they take there: the
#: selection figure and test metrics (``accuracy`` etc. at the argmax decision, see :func:`metric_column`).
SEED_TABLE_COLUMNS = {"selection_value": "selection_value",
                      **{m: metric_column(m) for m in ("roc_auc", "accuracy", "balanced_accuracy",
                                                       "average_precision", "f1_macro", "sensitivity",
                                                       "specificity")}}


def seeds_table(board: pd.DataFrame) -> pd.DataFrame:
    """One row per method of a seeded board, in the board's order (ok methods first, then by mean selection figure;
    never by test): ``method, status, selected, n_seeds, seeds, deployed`` (the label of the row whose fitted model
    the method deploys: the master seed's) and ``<name>_mean`` / ``<name>_sd`` over seeds (:data:`SEED_TABLE_COLUMNS`).
    What ``seeds.csv`` holds and the report shows."""
    if not is_seeded(board):
        raise ValueError("seeds_table needs a leaderboard built with seeds (columns base_method, seed, n_seeds)")
    sel = selected_method(board)
    deployed = set(deployed_rows(board) or [])
    rows = []
    for base, g in board.groupby("base_method", sort=False):
        first = g.iloc[0]  # the board puts a method's master-seed row first
        row: dict = {"method": base, "status": str(first["status"]),
                     "selected": sel is not None and sel in set(g["method"].astype(str)),
                     "n_seeds": int(first["n_seeds"]),
                     "seeds": " ".join(str(int(s)) for s in sorted(g["seed"].dropna())),
                     "deployed": next((str(m) for m in g["method"] if str(m) in deployed), "")}
        for name, column in SEED_TABLE_COLUMNS.items():
            if column + SEEDS_MEAN in g.columns:
                row[f"{name}_mean"] = finite_float(first[column + SEEDS_MEAN])
                row[f"{name}_sd"] = finite_float(first[column + SEEDS_SD])
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in out.columns:
        if c.endswith(("_mean", "_sd")):
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def selected_summary(board: pd.DataFrame) -> dict | None:
    """The selection as plain data (metrics.json, benchmarks): the selected row's label and, on a seeded board,
    the method, its seeds, the deployed seed, and the mean / sd over seeds of the selection figure and of every test
    metric beside the deployed seed's own; None when nothing is selected."""
    sel = selected_method(board)
    if sel is None:
        return None
    r = board[board["method"].astype(str) == sel].iloc[0]
    out: dict = {"row": sel, "method": sel, "selection_metric": str(r["selection_metric"]),
                 "selection_value": finite_float(r["selection_value"])}
    if is_seeded(board):
        pooled = [c[: -len(SEEDS_MEAN)] for c in board.columns if c.endswith(SEEDS_MEAN)]
        rows = board[board["base_method"].astype(str) == str(r["base_method"])]
        out.update({"method": str(r["base_method"]), "deployed_seed": int(r["seed"]),
                    "seeds": sorted(int(s) for s in rows["seed"].dropna()), "n_seeds": int(r["n_seeds"]),
                    "pooled_over_seeds": {c: {"mean": finite_float(r[c + SEEDS_MEAN]), "sd": finite_float(r[c + SEEDS_SD]),
                                              "deployed_seed": finite_float(r[c])} for c in pooled}})
    return out


def _operating_point_columns(ev: Evaluation, policy: str) -> dict:
    out: dict = {"operating_point": policy, "positive_class": ev.positive_class, f"threshold@{policy}": None}
    ops = ev.operating_points
    row = ops[ops["policy"] == policy] if ops is not None and len(ops) else None
    if row is None or row.empty:
        return out
    r = row.iloc[0]
    out[f"threshold@{policy}"] = finite_float(r.get("threshold"))
    for split, prefix in (("val", "val_"), ("test", "")):
        for rate in ("sensitivity", "specificity"):
            out[f"{split}_{rate}@{policy}"] = finite_float(r.get(f"{prefix}{rate}"))
    for rate in ("sensitivity", "specificity"):
        out[f"test_{rate}@{policy}_ci_lo"] = finite_float(r.get(f"{rate}_ci_lo"))
        out[f"test_{rate}@{policy}_ci_hi"] = finite_float(r.get(f"{rate}_ci_hi"))
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
    seeds: Sequence[int] = (),
    master_seed: int | None = None,
) -> pd.DataFrame:
    """Selection figures (validation unless ``selection`` is given), statuses and the board in one call."""
    selection = dict(selection) if selection is not None else val_selection(evaluations, primary)
    statuses = method_statuses(evaluations, predictions, selection, histories=histories)
    return build_leaderboard(evaluations, selection=selection, statuses=statuses, comparisons=comparisons,
                             info=info, primary=primary, operating_point=operating_point, seeds=seeds,
                             master_seed=master_seed)


def selected_method(board: pd.DataFrame) -> str | None:
    """The selected row's method (also from a leaderboard read back from CSV), or None."""
    if board is None or board.empty or "selected" not in board.columns:
        return None
    sel = board[board["selected"].astype(str).str.lower().isin(("true", "1"))]
    return str(sel["method"].iloc[0]) if len(sel) else None


def finite_float(v: object) -> float | None:
    """``v`` as a float, or None when it is missing, not a number or not finite (a cell of the leaderboard)."""
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def threshold_text(threshold: object, missing: str = "not attainable") -> str:
    """A frozen threshold with enough digits to tell it from 0 and 1 (``0.412``, ``0.99987``, never ``1.000``);
    ``missing`` for a policy with no threshold (not attainable on validation)."""
    t = finite_float(threshold)
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
    lo, hi, sd = finite_float(r.get("selection_ci_lo")), finite_float(r.get("selection_ci_hi")), finite_float(r.get("selection_sd"))
    if lo is not None and hi is not None:
        fig += f" [{lo:.3f}, {hi:.3f}]"
    elif sd is not None:
        fig += f" ± {sd:.3f}"
    where = "cross-validation over train+val" if metric.startswith("cv_") else "the validation split"
    if not is_seeded(board):
        return f"selected: {sel} (best {metric} = {fig}, chosen on {where}; the test split chose nothing)"
    seeds = sorted(int(s) for s in board.loc[board["base_method"] == r["base_method"], "seed"].dropna())
    tests = [c for c in (metric_column(m) for m in dict.fromkeys(
        ("roc_auc", "accuracy", str(board.attrs.get("primary") or "roc_auc")))) if c in board.columns]
    return (f"selected: {r['base_method']} (best mean {metric} over seeds {seeds} = "
            f"{pooled_text(r, 'selection_value', own_figure=False)}, chosen on {where}; the test split chose "
            f"nothing); deployed model: {sel}, the master seed's fit (its own {metric} = {fig}); test "
            + ", ".join(f"{c[len('test_'):]} {pooled_text(r, c)}" for c in tests))


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
