"""RBF support vector machine with Platt-calibrated probabilities, saved as plain arrays.

Probabilities follow Platt (1999) as LIBSVM does, without the deprecated ``SVC(probability=True)``: the SVM's
decision values on held-out rows of an internal stratified k-fold (out of fold, so not over-confident) fit a sigmoid
``p = 1 / (1 + exp(A f + B))`` with Platt's smoothed targets; the SVM itself is then fitted on all rows. More than
two classes: one binary SVM per class (one-vs-rest), each with its own sigmoid, probabilities renormalised to sum to
one (what ``CalibratedClassifierCV`` does for multiclass). Every fitted quantity (support vectors, dual coefficients,
intercepts, gamma, sigmoid parameters) is an array or a number, so the head saves to safetensors + JSON.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from breastclip.heads._base import BaseHead


def platt_fit(decision: np.ndarray, y01: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple[float, float]:
    """Platt's sigmoid ``(A, B)`` for ``P(y=1 | f) = 1 / (1 + exp(A f + B))``, with his smoothed targets
    ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` so that separable data do not give infinite slopes. Sample weights
    (class weights) weigh each row's log loss, as ``CalibratedClassifierCV`` does."""
    f = np.asarray(decision, dtype=np.float64)
    y01 = np.asarray(y01).astype(bool)
    w = np.ones(len(f)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    n_pos, n_neg = float(w[y01].sum()), float(w[~y01].sum())
    t = np.where(y01, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def nll(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * f + ab[1]
        # -[t log p + (1-t) log(1-p)] with p = sigmoid(-z): stable via logaddexp
        loss = t * np.logaddexp(0.0, z) + (1.0 - t) * np.logaddexp(0.0, -z)
        p = 1.0 / (1.0 + np.exp(np.clip(z, -500, 500)))  # sigmoid(-z)
        g = t - p  # d loss / d z
        return float(w @ loss), np.array([float((w * g) @ f), float(w @ g)])

    b0 = float(np.log((n_neg + 1.0) / (n_pos + 1.0)))
    res = minimize(nll, np.array([0.0, b0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


def platt_apply(decision: np.ndarray, a: float, b: float) -> np.ndarray:
    z = np.clip(a * np.asarray(decision, dtype=np.float64) + b, -500, 500)
    return 1.0 / (1.0 + np.exp(z))


def rbf_kernel(X: np.ndarray, Y: np.ndarray, gamma: float) -> np.ndarray:
    d2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return np.exp(-gamma * np.maximum(d2, 0.0))


#: Up to this many training rows the RBF kernel is computed once per fit with BLAS (``rbf_kernel``, n x n float64:
#: 128 MB at 4096 rows) and every SVM of the fit (the final one and the ``calibration_cv`` Platt folds) reads it
#: precomputed; LIBSVM's own per-pair kernel loop costs ~D flops per entry, again in every fold, and dominated
#: the cross-validated selection of wide embeddings. Above it, LIBSVM computes (and caches) its kernel as usual.
GRAM_ROWS = 4096


class RBFSVMHead(BaseHead):
    """RBF-kernel SVM (``C``, ``gamma``; 'scale' = 1 / (d * var(X)) after standardising) with Platt probabilities
    fitted on ``calibration_cv``-fold out-of-fold decision values of the training rows.

    ``standardize`` z-scores each feature with training-row statistics (saved with the head). ``class_weight``
    (None, 'balanced' or ``{label: weight}``) weighs rows in the SVM and in the sigmoid fit alike. Validation data, when the pipeline passes it, is not used:
    hyperparameters are chosen by cross-validation (``evaluation.selection = "cv"``) or set in the config.
    """

    head_name = "svm_rbf"
    #: Searched by ``evaluation.selection = "cv"`` when the config gives no ``params_grid``.
    default_grid: ClassVar[dict[str, tuple]] = {"C": (1.0, 3.0, 10.0, 30.0)}

    def __init__(
        self,
        C: float = 10.0,
        gamma: str | float = "scale",
        standardize: bool = True,
        class_weight: str | dict | None = None,
        calibration_cv: int = 5,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.gamma = gamma
        self.standardize = standardize
        self.class_weight = class_weight
        self.calibration_cv = calibration_cv
        self.random_state = random_state

    def _svc(self, gamma: float, precomputed: bool = False) -> SVC:
        if precomputed:
            return SVC(C=self.C, kernel="precomputed", random_state=self.random_state)
        return SVC(C=self.C, kernel="rbf", gamma=gamma, random_state=self.random_state)

    def _gamma(self, Xs: np.ndarray) -> float:
        if self.gamma == "scale":
            var = float(Xs.var())
            return 1.0 / (Xs.shape[1] * var) if var > 0 else 1.0
        if self.gamma == "auto":
            return 1.0 / Xs.shape[1]
        if isinstance(self.gamma, str):
            raise ValueError(f"gamma must be 'scale', 'auto' or a positive number, got {self.gamma!r}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma!r}")
        return float(self.gamma)

    def _binary_problems(self, y_idx: np.ndarray) -> list[np.ndarray]:
        """0/1 targets of each binary SVM: one (class 1 vs 0) for two classes, one per class otherwise."""
        if len(self.classes_) == 2:
            return [(y_idx == 1).astype(int)]
        return [(y_idx == k).astype(int) for k in range(len(self.classes_))]

    def _sample_weight(self, y_idx: np.ndarray) -> np.ndarray | None:
        """Per-row weights from ``class_weight`` (keyed by the original labels), or None."""
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            return compute_sample_weight("balanced", y_idx)
        if not isinstance(self.class_weight, dict):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}")
        per_class = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])
        return per_class[y_idx]

    def _oof_decision(self, Xs: np.ndarray, t: np.ndarray, w: np.ndarray | None, gamma: float,
                      K: np.ndarray | None = None) -> np.ndarray:
        """Decision values of held-out rows (internal stratified folds); in-sample when a class is too small.
        ``K``: the rows' precomputed kernel (see :data:`GRAM_ROWS`), else LIBSVM computes it."""
        pre = K is not None
        n_min = int(np.bincount(t, minlength=2).min())
        k = min(int(self.calibration_cv), n_min)
        if k < 2:
            A = K if K is not None else Xs
            return self._svc(gamma, pre).fit(A, t, sample_weight=w).decision_function(A)
        out = np.zeros(len(t))
        seed = 0 if self.random_state is None else int(self.random_state)
        for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(Xs, t):
            wt = None if w is None else w[tr]
            if K is not None:
                svc = self._svc(gamma, True).fit(K[np.ix_(tr, tr)], t[tr], sample_weight=wt)
                out[te] = svc.decision_function(K[np.ix_(te, tr)])
            else:
                out[te] = self._svc(gamma).fit(Xs[tr], t[tr], sample_weight=wt).decision_function(Xs[te])
        return out

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit the SVM(s) on all rows and their Platt sigmoids on out-of-fold decision values."""
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C!r}")
        X, y_idx = self._validate_train(X, y)
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        else:
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        Xs = (X - self.mean_) / self.scale_
        self.gamma_ = self._gamma(Xs)
        w = self._sample_weight(y_idx)
        self.support_vectors_, self.dual_coef_, intercepts, platt = [], [], [], []
        with threadpool_limits(1):
            K = rbf_kernel(Xs, Xs, self.gamma_) if len(Xs) <= GRAM_ROWS else None
            for t in self._binary_problems(y_idx):
                svc = self._svc(self.gamma_, K is not None).fit(Xs if K is None else K, t, sample_weight=w)
                sv = Xs[svc.support_] if K is not None else svc.support_vectors_
                self.support_vectors_.append(np.asarray(sv, dtype=np.float64))
                self.dual_coef_.append(svc.dual_coef_[0].astype(np.float64))
                intercepts.append(float(svc.intercept_[0]))
                platt.append(platt_fit(self._oof_decision(Xs, t, w, self.gamma_, K), t, w))
        self.intercept_ = np.asarray(intercepts)
        self.platt_ = np.asarray(platt)  # (n_models, 2): A, B
        return self

    def svm_decision(self, X) -> np.ndarray:
        """Raw SVM decision values: (n,) for two classes (positive: ``classes_[1]``), else (n, K) one-vs-rest.
        Not ``decision_function``: with several classes the calibrated probabilities, not these, decide."""
        Xs = (self._check_predict_input(X) - self.mean_) / self.scale_
        cols = [rbf_kernel(Xs, sv, self.gamma_) @ a + b
                for sv, a, b in zip(self.support_vectors_, self.dual_coef_, self.intercept_, strict=True)]
        return cols[0] if len(cols) == 1 else np.column_stack(cols)

    def predict_proba(self, X) -> np.ndarray:
        f = self.svm_decision(X)
        if f.ndim == 1:
            p1 = platt_apply(f, *self.platt_[0])
            return np.column_stack([1.0 - p1, p1])
        p = np.column_stack([platt_apply(f[:, k], *self.platt_[k]) for k in range(f.shape[1])])
        s = p.sum(axis=1, keepdims=True)
        return np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / p.shape[1])

    def _export_state(self):
        arrays = {"mean": self.mean_, "scale": self.scale_, "intercept": self.intercept_, "platt": self.platt_}
        for k, (sv, a) in enumerate(zip(self.support_vectors_, self.dual_coef_, strict=True)):
            arrays[f"support_vectors.{k}"], arrays[f"dual_coef.{k}"] = sv, a
        return arrays, {"gamma": self.gamma_, "n_models": len(self.support_vectors_)}

    def _import_state(self, arrays, state):
        self.mean_, self.scale_ = arrays["mean"], arrays["scale"]
        self.intercept_, self.platt_ = arrays["intercept"], arrays["platt"]
        n = int(state["n_models"])
        self.support_vectors_ = [arrays[f"support_vectors.{k}"] for k in range(n)]
        self.dual_coef_ = [arrays[f"dual_coef.{k}"] for k in range(n)]
        self.gamma_ = float(state["gamma"])
