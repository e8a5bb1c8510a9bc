"""experiment.label_fractions / experiment.shots: stratified nested subsets of train, a curve per method."""

from __future__ import annotations

import base64
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from breastclip.config import ConfigError, load_config
from breastclip.pipeline import run_experiment
from breastclip.pipeline.label_efficiency import nested_subset
from breastclip.report.content import Note
from breastclip.report.label_efficiency import (
    FIGURE_KEY,
    curve_summary,
    curve_table,
    draw,
    label_efficiency_section,
)
from breastclip.report.sections import FigureWriter


def test_subsets_are_stratified_and_nested():
    y = np.array(["a"] * 40 + ["b"] * 10)
    small, big = nested_subset(y, "fraction", 0.1, 0), nested_subset(y, "fraction", 0.5, 0)
    assert (y[small] == "a").sum() == 4 and (y[small] == "b").sum() == 1
    assert set(small) <= set(big)
    shots = nested_subset(y, "shots", 3, 1)
    assert (y[shots] == "a").sum() == 3 and (y[shots] == "b").sum() == 3
    assert set(nested_subset(y, "shots", 2, 1)) <= set(shots)
    assert not np.array_equal(nested_subset(y, "shots", 3, 2), shots)  # another seed, another draw


def test_label_efficiency_curve_per_method(tiny_raw):
    raw = tiny_raw(methods=[{"name": "simpleshot", "head": "simpleshot"},
                            {"name": "lp", "head": "linear_probe", "params": {"Cs": [0.1, 1.0], "refine": 0}}],
                   gate={"ood": False}, evaluation={"n_bootstrap": 0})
    raw["experiment"]["shots"] = [1, 4]
    raw["experiment"]["label_fractions"] = [1.0]
    out = run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True)).out_dir
    table = pd.read_csv(out / "label_efficiency.csv")
    assert set(table["method"]) == {"simpleshot", "lp"}
    assert len(table) == 6
    assert table["pool"].eq("train").all()  # validation selection: the main fit trained on train
    n_train_classes = pd.read_csv(out / "manifest.csv").query("split == 'train'")["label"].nunique()
    one = table[(table["budget"] == "shots") & (table["value"] == 1)]
    assert one["n_train"].eq(n_train_classes).all()
    full = table[table["budget"] == "fraction"].set_index("method")
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    # all of train with the same hyperparameters reproduces the main fit's test AUC
    assert full.loc["simpleshot", "roc_auc"] == pytest.approx(board.loc["simpleshot", "test_roc_auc"])
    assert (out / "figures" / "label_efficiency.png").is_file()


def test_bad_budgets_are_named(tiny_raw):
    raw = tiny_raw()
    raw["experiment"]["label_fractions"] = [0.0, 2.0]
    with pytest.raises(ConfigError, match="label_fractions"):
        load_config(raw=raw)


def test_cv_curve_refits_on_train_val_and_its_full_point_is_the_leaderboard_fit(tiny_raw):
    """Under CV selection the main model is refitted on train+val, so the curve's pool is train+val: its 100 %
    point is that same fit (per seed, ensemble included, refitted from its members) and reproduces the
    leaderboard's test AUC exactly. The report carries the curve, drawn into the same figure file."""
    raw = tiny_raw(methods=[{"name": "knn", "head": "knn", "params_grid": {"k": [3, 7]}},
                            {"name": "simpleshot", "head": "simpleshot"},
                            {"name": "ens", "head": "ensemble", "params": {"top_k": 2}}],
                   evaluation={"n_bootstrap": 0, "selection": "cv", "cv_splits": 3, "cv_repeats": 1, "cv_jobs": 1},
                   gate={"ood": False}, report={"enabled": True, "gradcam": 0, "neighbours": 0})
    raw["experiment"].update(seeds=[0, 1], shots=[1, 2], label_fractions=[0.5, 1.0])
    out = run_experiment(load_config(raw=raw), progress=False, console=Console(quiet=True)).out_dir
    table = pd.read_csv(out / "label_efficiency.csv")
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(table["method"]) == {"knn", "simpleshot", "ens"}
    assert table["pool"].eq("train+val").all()
    assert table["n_pool"].eq(manifest["split"].isin(["train", "val"]).sum()).all()
    assert set(table["seed"]) == {0, 1} and table["roc_auc"].notna().all()
    full = table[(table["budget"] == "fraction") & (table["value"] == 1.0)].set_index("label")
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert len(full) == 6
    for label, row in full.iterrows():
        assert row["roc_auc"] == pytest.approx(board.loc[label, "test_roc_auc"], abs=1e-12), label
    # the report's section embeds the very figure of the results folder, and the table of means over seeds
    html = (out / "report.html").read_text()
    start = html.index('<section id="label-efficiency">')
    section = html[start:html.index("</section>", start)]
    embedded = re.search(r'<img src="data:image/png;base64,([^"]+)"', section)
    assert embedded is not None
    assert base64.b64decode(embedded.group(1)) == (out / "figures" / f"{FIGURE_KEY}.png").read_bytes()
    assert "mean \u00b1 sd over seeds" in section and "100% (n=" in section
    assert html.count(f'id="{FIGURE_KEY}"') == 1


def _curve_rows() -> pd.DataFrame:
    rows = []
    for method, base in (("svm_rbf", 0.8), ("knn", 0.7)):
        for seed in (0, 1, 2):
            for budget, value, n in (("shots", 1, 3), ("shots", 4, 12), ("fraction", 0.1, 50), ("fraction", 1.0, 499)):
                auc = base + 0.01 * seed + (0.1 if n > 40 else 0.0)
                rows.append({"method": method, "label": f"{method}.seed{seed}", "seed": seed, "budget": budget,
                             "value": value, "n_train": n, "pool": "train+val", "n_pool": 499, "roc_auc": auc,
                             "accuracy": 0.5, "auc_definition": "macro one-vs-rest, 3 classes", "error": ""})
    return pd.DataFrame(rows)


def test_curve_summary_is_mean_and_sd_over_seeds():
    s = curve_summary(_curve_rows()).set_index(["method", "budget", "value"])
    row = s.loc[("svm_rbf", "fraction", 1.0)]
    assert row["mean"] == pytest.approx(np.mean([0.9, 0.91, 0.92]))
    assert row["sd"] == pytest.approx(np.std([0.9, 0.91, 0.92], ddof=1))
    assert row["n_seeds"] == 3 and row["n_train"] == 499
    cells = curve_table(curve_summary(_curve_rows())).set_index("method")
    assert list(cells.columns) == ["1/class (n=3)", "4/class (n=12)", "10% (n=50)", "100% (n=499)"]
    assert cells.loc["knn", "1/class (n=3)"] == "0.710 \u00b1 0.010"


def test_curve_figure_has_a_panel_per_budget_kind_and_says_what_it_shows():
    """Shots and fractions in two panels on a shared y axis: images per class, then training images; the AUC's
    definition on the axis; the note that test figures chose nothing; one line per method with sd bars."""
    fig = draw(_curve_rows())
    left, right = fig.axes[:2]
    assert "per class" in left.get_xlabel() and "training images" in right.get_xlabel()
    assert "macro one-vs-rest, 3 classes" in left.get_ylabel()
    assert right.get_shared_y_axes().joined(left, right)
    assert "chose nothing" in fig._suptitle.get_text() and "sd over seeds" in fig._suptitle.get_text()
    assert any("research use only" in t.get_text().lower() for t in fig.texts)
    assert [t.get_text() for t in right.get_xticklabels()] == ["10%\n50", "100%\n499"]
    for ax in (left, right):
        assert len(ax.containers) == 2  # an errorbar per method
        y = sorted(round(float(c.lines[0].get_ydata()[0]), 6) for c in ax.containers)
        assert y == ([0.71, 0.81] if ax is left else [0.81, 0.91])
    plt.close(fig)


def test_failed_refits_are_named_in_the_report_section(tmp_path):
    """A refit that failed keeps its row (roc_auc empty, error given): the table shows '-' for a budget no seed
    produced, and the report section names it instead of drawing a silent gap."""
    rows = _curve_rows()
    bad = (rows["method"] == "svm_rbf") & (rows["budget"] == "shots") & (rows["value"] == 1)
    rows.loc[bad, "roc_auc"] = np.nan
    rows.loc[bad, "error"] = "ValueError: too few images"
    section = label_efficiency_section(rows, FigureWriter(tmp_path))
    notes = [b for b in section.blocks if isinstance(b, Note)]
    assert len(notes) == 1 and "svm_rbf at 1/class (n=3)" in notes[0].text and notes[0].level == "warn"
    assert curve_table(curve_summary(rows)).set_index("method").loc["svm_rbf", "1/class (n=3)"] == "-"
    assert (tmp_path / f"{FIGURE_KEY}.png").is_file()
    plt.close("all")
