"""scikit-learn's estimator checks on every trainable head (small epochs to keep them fast)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.estimator_checks import parametrize_with_checks

from breastclip.heads import (
    HEADS,
    EmbeddingOOD,
    EnsembleHead,
    FCHead,
    KNNHead,
    LinearProbe,
    MLPHead,
    NearestClassMeanHead,
    RBFSVMHead,
    SimilarityGuidedHead,
    TipAdapter,
    TipAdapterF,
)

ESTIMATORS = [
    LinearProbe(Cs=(0.1, 1.0, 10.0), refine=0, random_state=0),
    MLPHead(epochs=5, random_state=0),
    FCHead(epochs=5, random_state=0),
    SimilarityGuidedHead(epochs=10, random_state=0),
    TipAdapter(shots=None, random_state=0),
    TipAdapterF(shots=None, epochs=3, random_state=0),
    EmbeddingOOD(random_state=0),
    RBFSVMHead(random_state=0),
    KNNHead(random_state=0),
    KNNHead(k=3, weights="uniform"),
    NearestClassMeanHead(),
    EnsembleHead(members=(("simpleshot", {}), ("svm_rbf", {"C": 1.0, "random_state": 0}))),
]


def test_every_registered_head_is_checked():
    """A head added to ``HEADS`` without an entry above would escape the checks: fail instead."""
    checked = {type(e).head_name for e in ESTIMATORS}
    assert set(HEADS) - {"zeroshot"} <= checked, sorted(set(HEADS) - {"zeroshot"} - checked)


# Every check applies and passes: no expected_failed_checks entries are needed for these heads.
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_zero_shot_is_not_checked_for_a_reason():
    """ZeroShotHead is exempt: its classes come from the text embeddings, not from y, so the generic checks
    (which fit with arbitrary label sets) do not apply. Its own tests cover fit/predict/clone/save."""
    from sklearn.base import clone

    from breastclip.heads import ZeroShotHead

    head = ZeroShotHead(np.eye(3)[:2], classes=["a", "b"])
    assert clone(head).get_params()["classes"] == ["a", "b"]
