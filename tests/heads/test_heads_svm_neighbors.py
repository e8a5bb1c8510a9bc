"""The RBF SVM (Platt probabilities), kNN, SimpleShot and ensemble heads against scikit-learn references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import _SigmoidCalibration
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from breastclip.heads import EnsembleHead, KNNHead, NearestClassMeanHead, RBFSVMHead, load_head
from breastclip.heads.neighbors import DEFAULT_KS
from breastclip.heads.svm import platt_fit


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(n_samples=240, n_features=12, n_informative=6, class_sep=0.8, random_state=1)
    return X[:160], y[:160], X[160:], y[160:]


def test_svm_decision_is_sklearn_svc(binary):
    X, y, Xt, _ = binary
    head = RBFSVMHead(C=3.0, random_state=0).fit(X, y)
    ref = SVC(C=3.0, gamma=head.gamma_).fit((X - head.mean_) / head.scale_, y)
    np.testing.assert_allclose(head.svm_decision(Xt), ref.decision_function((Xt - head.mean_) / head.scale_),
                               atol=1e-9)
    assert head.gamma_ == pytest.approx(1.0 / (X.shape[1] * ((X - head.mean_) / head.scale_).var()))


def test_platt_matches_sklearn_sigmoid_calibration(binary):
    rng = np.random.default_rng(0)
    f = rng.normal(size=300)
    y = (f + rng.normal(scale=1.0, size=300) > 0).astype(int)
    ref = _SigmoidCalibration().fit(f, y)
    a, b = platt_fit(f, y)
    assert a == pytest.approx(ref.a_, abs=1e-4) and b == pytest.approx(ref.b_, abs=1e-4)


def test_svm_probabilities_are_out_of_fold_calibrated(binary):
    """Platt on held-out decisions: probabilities rank like the decision and are not all pushed to 0/1."""
    X, y, Xt, yt = binary
    head = RBFSVMHead(C=10.0, random_state=0).fit(X, y)
    p = head.predict_proba(Xt)[:, 1]
    assert roc_auc_score(yt, p) == pytest.approx(roc_auc_score(yt, head.svm_decision(Xt)))
    assert head.platt_[0, 0] < 0  # larger decision, higher probability of classes_[1]
    assert 0.05 < p.mean() < 0.95 and np.ptp(p) > 0.5


def test_svm_multiclass_one_vs_rest_and_save(tmp_path):
    X, y = make_classification(n_samples=210, n_features=8, n_informative=5, n_classes=3, random_state=0)
    labels = np.array(["benign", "malignant", "normal"])[y]
    head = RBFSVMHead(random_state=0).fit(X, labels)
    assert len(head.support_vectors_) == 3 and head.platt_.shape == (3, 2)
    loaded = load_head(head.save(tmp_path / "svm"))
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))
    assert np.mean(head.predict(X) == labels) > 0.8


def test_svm_rejects_bad_hyperparameters(binary):
    X, y, _, _ = binary
    with pytest.raises(ValueError, match="C must be positive"):
        RBFSVMHead(C=0).fit(X, y)
    with pytest.raises(ValueError, match="gamma must be"):
        RBFSVMHead(gamma="wide").fit(X, y)


def test_knn_fixed_k_matches_sklearn_on_cl2n_features(binary):
    X, y, Xt, _ = binary
    head = KNNHead(k=5, weights="uniform").fit(X, y)
    Z = X - X.mean(0)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    Zt = Xt - X.mean(0)
    Zt /= np.linalg.norm(Zt, axis=1, keepdims=True)
    ref = KNeighborsClassifier(n_neighbors=5).fit(Z, y)
    np.testing.assert_allclose(head.predict_proba(Xt), ref.predict_proba(Zt))


def test_knn_tunes_k_by_internal_cv(binary):
    X, y, _, _ = binary
    head = KNNHead(random_state=0).fit(X, y)
    assert [int(r["k"]) for r in head.cv_results_] == list(DEFAULT_KS)
    best = max(r["score"] for r in head.cv_results_)
    assert head.k_ in DEFAULT_KS and {r["k"]: r["score"] for r in head.cv_results_}[head.k_] == best


def test_simpleshot_is_nearest_centred_normalised_class_mean(binary):
    X, y, Xt, _ = binary
    head = NearestClassMeanHead().fit(X, y)
    mu = X.mean(0)

    def cl2n(A):
        A = A - mu
        return A / np.linalg.norm(A, axis=1, keepdims=True)

    cents = np.vstack([cl2n(X)[y == k].mean(0) for k in (0, 1)])
    expect = np.argmin(((cl2n(Xt)[:, None, :] - cents[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(head.predict(Xt), expect)
    assert head.scale_ > 0


def test_ensemble_is_the_mean_of_its_members(binary, tmp_path):
    X, y, Xt, _ = binary
    members = (("svm_rbf", {"C": 3.0, "random_state": 0}), ("simpleshot", {}))
    ens = EnsembleHead(members=members).fit(X, y)
    expect = (RBFSVMHead(C=3.0, random_state=0).fit(X, y).predict_proba(Xt)
              + NearestClassMeanHead().fit(X, y).predict_proba(Xt)) / 2
    np.testing.assert_allclose(ens.predict_proba(Xt), expect)
    loaded = load_head(ens.save(tmp_path / "ens"))
    np.testing.assert_array_equal(loaded.predict_proba(Xt), ens.predict_proba(Xt))


def test_ensemble_rejects_unknown_members(binary):
    X, y, _, _ = binary
    with pytest.raises(ValueError, match="not a trainable head"):
        EnsembleHead(members=(("zeroshot", {}),)).fit(X, y)
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleHead().fit(X, y)


def test_ensemble_from_fitted_members_is_the_refitted_ensemble(binary, tmp_path):
    """Assembled from heads already fitted on the rows, the ensemble predicts exactly what fitting it from its
    recorded ``members`` gives, and saves and loads like any ensemble (no member is fitted again)."""
    X, y, Xt, _ = binary
    fitted = [RBFSVMHead(C=3.0, random_state=0).fit(X, y), KNNHead(k=7).fit(X, y), NearestClassMeanHead().fit(X, y)]
    ens = EnsembleHead.from_fitted(fitted)
    assert ens.estimators_[0] is fitted[0]
    assert ens.members[0] == ("svm_rbf", fitted[0].get_params(deep=False))
    refit = EnsembleHead(members=ens.members).fit(X, y)
    np.testing.assert_array_equal(ens.predict_proba(Xt), refit.predict_proba(Xt))
    np.testing.assert_array_equal(ens.predict(Xt), refit.predict(Xt))
    loaded = load_head(ens.save(tmp_path / "ens"))
    np.testing.assert_array_equal(loaded.predict_proba(Xt), ens.predict_proba(Xt))
    with pytest.raises(ValueError, match="same classes"):
        EnsembleHead.from_fitted([fitted[0], NearestClassMeanHead().fit(X[:50], np.arange(50) % 3)])
    with pytest.raises(ValueError, match="not fitted"):
        EnsembleHead.from_fitted([fitted[0], NearestClassMeanHead()])


def test_ensemble_member_text_embeddings_travel_with_the_saved_weights(binary, tmp_path):
    """A member's array-valued hyperparameters (class text embeddings) are not JSON: they are saved with the
    ensemble's arrays and given back to the member on load."""
    from breastclip.heads import TipAdapter

    X, y, Xt, _ = binary
    text = np.random.default_rng(0).standard_normal((2, X.shape[1]))
    tip = TipAdapter(text_embeddings=text, text_aligned=True, shots=None, search=False).fit(X, y)
    ens = EnsembleHead.from_fitted([tip, NearestClassMeanHead().fit(X, y)])
    loaded = load_head(ens.save(tmp_path / "ens"))
    np.testing.assert_array_equal(loaded.estimators_[0].text_embeddings, text)
    np.testing.assert_allclose(loaded.predict_proba(Xt), ens.predict_proba(Xt), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_svm_precomputed_kernel_is_the_libsvm_kernel_fit(n_classes, monkeypatch):
    """Up to GRAM_ROWS rows the kernel is computed once with BLAS and handed to LIBSVM precomputed; the fitted SVMs
    (support set, dual coefficients, intercepts) and the Platt probabilities are those of LIBSVM's own RBF kernel
    up to the solver's tolerance."""
    from breastclip.heads import svm

    X, y = make_classification(n_samples=200, n_features=40, n_informative=8, n_classes=n_classes,
                               class_sep=0.7, random_state=2)
    Xt = X[150:]
    kernels: list[str] = []

    class SpySVC(SVC):
        def fit(self, A, t, sample_weight=None):
            kernels.append(self.kernel)
            return super().fit(A, t, sample_weight=sample_weight)

    monkeypatch.setattr(svm, "SVC", SpySVC)
    gram = RBFSVMHead(C=3.0, random_state=0).fit(X[:150], y[:150])
    n_svms = 1 if n_classes == 2 else n_classes
    assert kernels == ["precomputed"] * (n_svms * 6)  # the final SVM and 5 Platt folds each, one kernel
    monkeypatch.setattr(svm, "GRAM_ROWS", 0)
    plain = RBFSVMHead(C=3.0, random_state=0).fit(X[:150], y[:150])
    assert set(kernels[n_svms * 6:]) == {"rbf"}
    for a, b in zip(gram.support_vectors_, plain.support_vectors_, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(gram.dual_coef_, plain.dual_coef_, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(gram.intercept_, plain.intercept_, atol=1e-6)
    np.testing.assert_allclose(gram.predict_proba(Xt), plain.predict_proba(Xt), atol=1e-5)
    np.testing.assert_array_equal(gram.predict(Xt), plain.predict(Xt))
