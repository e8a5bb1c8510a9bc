"""Metrics equal scikit-learn's on random inputs (hypothesis property tests)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from breastclip.evaluation.metrics import (
    average_precision,
    binary_auc,
    confusion_counts,
    confusion_matrices,
    headline_metrics,
    per_class_table,
    resolve_positive_class,
    roc_points,
)

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def samples(draw, k=None, all_present=True):
    k = k or draw(st.integers(2, 5))
    n = draw(st.integers(k + 2, 80))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    if all_present:
        y[:k] = np.arange(k)
        rng.shuffle(y)
    # coarse probabilities make ties likely, which is where AUC / AP implementations usually differ
    coarse = draw(st.booleans())
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * rng.uniform(0, 1)
    if coarse:
        logits = np.round(logits)
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    return y, proba


@SETTINGS
@given(samples())
def test_headline_equals_sklearn(sample):
    y, proba = sample
    k = proba.shape[1]
    y_hat = proba.argmax(axis=1)
    got = headline_metrics(y, proba, positive_index=1 if k == 2 else None)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, y_hat))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, y_hat))
    for avg in ("precision", "recall", "f1"):
        fn = getattr(skm, f"{avg}_score" if avg != "f1" else "f1_score")
        assert got[f"{avg}_macro"] == pytest.approx(fn(y, y_hat, average="macro", zero_division=0))
    if k == 2:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
        assert got["average_precision"] == pytest.approx(skm.average_precision_score(y, proba[:, 1]))
        assert got["sensitivity"] == pytest.approx(skm.recall_score(y, y_hat, pos_label=1))
        assert got["specificity"] == pytest.approx(skm.recall_score(y, y_hat, pos_label=0))
    else:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
        yb = label_binarize(y, classes=np.arange(k))
        assert got["average_precision"] == pytest.approx(skm.average_precision_score(yb, proba, average="macro"))


@SETTINGS
@given(samples())
def test_per_class_table_equals_sklearn(sample):
    y, proba = sample
    k = proba.shape[1]
    y_hat = proba.argmax(axis=1)
    table = per_class_table(y, proba, [f"c{j}" for j in range(k)])
    p, r, f, s = skm.precision_recall_fscore_support(y, y_hat, labels=np.arange(k), zero_division=0)
    np.testing.assert_allclose(table["precision"], p)
    np.testing.assert_allclose(table["recall"], r)
    np.testing.assert_allclose(table["f1"], f)
    np.testing.assert_array_equal(table["support"], s)
    cm = skm.confusion_matrix(y, y_hat, labels=np.arange(k))
    tn = cm.sum() - cm.sum(axis=0) - cm.sum(axis=1) + np.diag(cm)
    fp = cm.sum(axis=0) - np.diag(cm)
    np.testing.assert_allclose(table["specificity"], tn / (tn + fp))
    for j in range(k):
        assert table["roc_auc"][j] == pytest.approx(skm.roc_auc_score(y == j, proba[:, j]))
        assert table["average_precision"][j] == pytest.approx(skm.average_precision_score(y == j, proba[:, j]))


@SETTINGS
@given(samples(all_present=False))
def test_confusion_and_roc_points_equal_sklearn(sample):
    y, proba = sample
    k = proba.shape[1]
    cm = confusion_counts(y, proba.argmax(axis=1), k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, proba.argmax(axis=1), labels=np.arange(k)))
    norm = np.array(confusion_matrices(y, proba, [str(j) for j in range(k)])["normalised"])
    present = cm.sum(axis=1) > 0
    np.testing.assert_allclose(norm[present], skm.confusion_matrix(
        y, proba.argmax(axis=1), labels=np.arange(k), normalize="true")[present])
    yb = (y == 0).astype(int)
    if 0 < yb.sum() < yb.size:
        fpr, tpr, thr = roc_points(yb, proba[:, 0])
        sf, st_, sthr = skm.roc_curve(yb, proba[:, 0], drop_intermediate=False)
        np.testing.assert_allclose(fpr, sf)
        np.testing.assert_allclose(tpr, st_)
        np.testing.assert_allclose(thr[1:], sthr[1:])


def test_undefined_auc_is_nan_and_multiclass_skips_absent_classes():
    assert np.isnan(binary_auc(np.ones(5), np.linspace(0, 1, 5)))
    assert np.isnan(average_precision(np.zeros(5), np.linspace(0, 1, 5)))
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    got = headline_metrics(y, proba)
    expected = np.mean([skm.roc_auc_score(y == 0, proba[:, 0]), skm.roc_auc_score(y == 1, proba[:, 1])])
    assert got["roc_auc"] == pytest.approx(expected)


def test_positive_class_resolution():
    assert resolve_positive_class(["benign", "malignant"]) == ("malignant", "class name")
    assert resolve_positive_class(["malignant", "normal_or_benign"]) == ("malignant", "class name")
    assert resolve_positive_class(["benign", "malignant", "normal"]) == ("malignant", "class name")
    assert resolve_positive_class(["medical", "non_medical"]) == ("non_medical", "second class")
    assert resolve_positive_class(["a", "b", "c"]) == (None, "none")
    assert resolve_positive_class(["tumour_free", "tumour", "other"]) == ("tumour", "class name")
    assert resolve_positive_class(["no cancer", "cancer"]) == ("cancer", "class name")
    assert resolve_positive_class(["Non-Malignant", "x", "y"]) == (None, "none")
    assert resolve_positive_class(["actionable", "cancer", "normal", "benign"]) == ("cancer", "class name")
    assert resolve_positive_class(["a", "b", "c"], "b") == ("b", "argument")
    with pytest.raises(ValueError, match="not one of the classes"):
        resolve_positive_class(["a", "b"], "z")


@SETTINGS
@given(samples(k=4, all_present=False))
def test_macro_metrics_with_absent_classes_follow_sklearn_defaults(sample):
    import warnings

    y, proba = sample
    y_hat = proba.argmax(axis=1)
    got = headline_metrics(y, proba)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes predicted but absent from y
        assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, y_hat))
        for avg in ("precision", "recall", "f1"):
            fn = getattr(skm, f"{avg}_score")
            assert got[f"{avg}_macro"] == pytest.approx(fn(y, y_hat, average="macro", zero_division=0))
