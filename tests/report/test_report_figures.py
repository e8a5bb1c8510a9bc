"""Figure functions: plain data in, a labelled Figure with the research-only footer out; 300-dpi PNG + JPG."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from breastclip import RESEARCH_ONLY
from breastclip.report import figures as F


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(plt.Text)]


def _curve(label: str, k: int) -> F.Curve:
    x = np.linspace(0, 1, 21)
    y = x ** (1 / (k + 2))
    return F.Curve(label, x, y, np.clip(y - 0.1, 0, 1), np.clip(y + 0.1, 0, 1), 0.8, (0.7, 0.9), 0.3)


SWEEP = pd.DataFrame({"threshold": np.linspace(0, 1, 11), "fp": np.arange(10, -1, -1), "fn": np.arange(11),
                      "sensitivity": np.linspace(1, 0, 11), "specificity": np.linspace(0, 1, 11)})
BINS = pd.DataFrame({"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0], "count": [10, 30], "confidence": [0.4, 0.8],
                     "accuracy": [0.5, 0.7]}).rename(columns={"bin_lo": "lower", "bin_hi": "upper"})
SUBGROUPS = pd.DataFrame({"attribute": ["view", "view", "density"], "group": ["CC", "MLO", "A"], "n": [40, 35, 4],
                          "value": [0.8, 0.7, np.nan], "lo": [0.7, 0.6, np.nan], "hi": [0.9, 0.8, np.nan],
                          "small": [False, False, True]})

FIGURES = {
    "class_distribution": lambda: F.class_distribution(pd.DataFrame({"benign": [50, 10], "malignant": [20, 5]},
                                                                    index=["train", "test"])),
    "loss_curves": lambda: F.loss_curves({"mlp": [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2},
                                                  {"epoch": 2, "train_loss": 0.5, "val_loss": 0.8}]}),
    "confusion_matrix": lambda: F.confusion_matrix(np.array([[8, 2], [1, 9]]), ["benign", "malignant"]),
    "roc_curves": lambda: F.roc_curves([_curve("benign", 0), _curve("malignant", 1)]),
    "pr_curves": lambda: F.pr_curves([_curve("malignant", 1)]),
    "calibration": lambda: F.calibration(BINS, ece=0.05),
    "threshold_tradeoff": lambda: F.threshold_tradeoff(SWEEP, operating_points={"youden": 0.4}, positive="malignant"),
    "subgroups": lambda: F.subgroups(SUBGROUPS, metric_label="ROC AUC", min_size=20),
    "error_gallery": lambda: F.error_gallery([np.full((32, 40, 3), 120, np.uint8), None], ["#1 true a\npred b (0.9)",
                                                                                       "#2 true b\npred a (0.8)"]),
    "leaderboard": lambda: F.leaderboard(pd.DataFrame({"method": ["a", "b"], "auc": [0.8, 0.9], "auc_lo": [0.7, 0.85],
                                                       "auc_hi": [0.88, 0.95]})),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_is_labelled_and_states_research_only(name):
    fig = FIGURES[name]()
    try:
        assert any(RESEARCH_ONLY in t for t in _texts(fig)), "research-only footer missing"
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>" or not ax.axison:  # colour bar, image thumbnail
                continue
            assert ax.get_xlabel() or ax.get_ylabel(), f"{name}: an axis has no label"
        assert any(ax.get_title() for ax in fig.axes) or fig._suptitle is not None, f"{name}: no title"
    finally:
        plt.close(fig)


def test_save_figure_writes_png_and_jpg_at_300_dpi(tmp_path):
    fig = FIGURES["confusion_matrix"]()
    width, height = fig.get_size_inches()
    png, jpg = F.save_figure(fig, tmp_path / "sub" / "cm")
    plt.close(fig)
    assert png.name == "cm.png" and jpg.name == "cm.jpg"
    for path, fmt in ((png, "PNG"), (jpg, "JPEG")):
        with Image.open(path) as im:
            assert im.format == fmt
            assert im.size == (round(width * 300), round(height * 300))
            assert round(im.info["dpi"][0]) == 300
    with Image.open(png) as im:
        assert RESEARCH_ONLY in im.info.get("Description", "")


def test_confusion_matrix_is_row_normalised_with_counts():
    fig = F.confusion_matrix(np.array([[8, 2], [1, 3]]), ["benign", "malignant"])
    texts = _texts(fig)
    plt.close(fig)
    assert "0.80\n(n=8)" in texts and "0.25\n(n=1)" in texts and "0.75\n(n=3)" in texts


def test_subgroup_chart_flags_small_groups_and_keeps_their_rows():
    fig = F.subgroups(SUBGROUPS, metric_label="ROC AUC", min_size=20)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    texts = _texts(fig)
    lo, hi = ax.get_ylim()
    plt.close(fig)
    assert labels == ["view = CC  (n=40)", "view = MLO  (n=35)", "density = A  (n=4) *"]
    assert lo < 0 < 2 < hi  # every row visible, the NaN one included
    assert any("not estimated" in t for t in texts)
    assert any("fewer than 20 images" in t for t in texts)


def test_threshold_tradeoff_marks_each_operating_point():
    fig = F.threshold_tradeoff(SWEEP, operating_points={"youden": 0.4, "sens>=0.90": 0.2}, positive="malignant")
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    assert "youden (t=0.400)" in legend and "sens>=0.90 (t=0.200)" in legend


def test_curve_legend_carries_score_and_ci():
    fig = F.roc_curves([_curve("malignant", 1)])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert legend[0] == "malignant (AUC 0.800 [0.700-0.900])"


def test_palette_is_colour_blind_safe_okabe_ito():
    assert F.PALETTE[:3] == ("#0072B2", "#D55E00", "#009E73")
