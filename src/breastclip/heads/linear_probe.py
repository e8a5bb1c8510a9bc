"""Linear probe: L2-regularised logistic regression (L-BFGS) on frozen embeddings, with the regularisation
strength chosen on the validation split, as in CLIP's linear-probe protocol (Radford et al. 2021, appendix A.3)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from breastclip.heads._base import BaseHead, softmax

SCORINGS = ("neg_log_loss", "accuracy", "roc_auc", "balanced_accuracy")


class LinearProbe(BaseHead):
    """Logistic regression whose inverse regularisation ``C`` is swept on validation data.

    The sweep covers ``Cs`` (default 10^-6 .. 10^6 by decades, CLIP's range) and then refines around the best
    decade with ``refine`` log-spaced steps. Validation data: ``X_val, y_val`` when given (the protocol), else
    ``cv``-fold stratified cross-validation on the training rows, else ``C=1``. ``scoring`` ranks the candidates
    (log loss by default: smoother than accuracy on small validation sets); ties go to the stronger
    regularisation. The final model is refit on the training rows only (``refit_on_val=True`` adds the
    validation rows). ``standardize`` z-scores features with training-row statistics (saved with the head).
    """

    head_name = "linear_probe"

    def __init__(
        self,
        Cs: tuple[float, ...] | None = None,
        refine: int = 8,
        scoring: str = "neg_log_loss",
        class_weight: str | dict | None = None,
        standardize: bool = False,
        cv: int = 5,
        refit_on_val: bool = False,
        max_iter: int = 1000,
        random_state: int | None = None,
    ) -> None:
        self.Cs = Cs
        self.refine = refine
        self.scoring = scoring
        self.class_weight = class_weight
        self.standardize = standardize
        self.cv = cv
        self.refit_on_val = refit_on_val
        self.max_iter = max_iter
        self.random_state = random_state

    # ---- internals ----------------------------------------------------------------------------------------
    def _lr(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter,
                                  random_state=self.random_state)

    def _score(self, model: LogisticRegression, X, y) -> float:
        p = model.predict_proba(X)
        labels = np.arange(len(self.classes_))
        full = np.zeros((len(X), len(labels)))
        full[:, model.classes_] = p
        if self.scoring == "neg_log_loss":
            return -log_loss(y, np.clip(full, 1e-15, 1), labels=labels)
        if self.scoring == "accuracy":
            return accuracy_score(y, full.argmax(1))
        if self.scoring == "balanced_accuracy":
            from sklearn.metrics import balanced_accuracy_score

            return balanced_accuracy_score(y, full.argmax(1))
        if len(np.unique(y)) < 2:
            return np.nan
        if len(labels) == 2:
            return roc_auc_score(y, full[:, 1])
        return roc_auc_score(y, full, multi_class="ovr", labels=labels)

    def _evaluate(self, C: float, folds) -> float:
        scores = []
        for X_tr, y_tr, X_va, y_va in folds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = self._lr(C).fit(X_tr, y_tr)
            scores.append(self._score(model, X_va, y_va))
        return float(np.nanmean(scores)) if not np.all(np.isnan(scores)) else -np.inf

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    # ---- API ----------------------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None):
        """Choose ``C`` on validation data, then fit on the training rows."""
        # one BLAS thread: the sweep is many small fits, where threads cost more than they gain
        with threadpool_limits(1):
            return self._fit(X, y, X_val, y_val)

    def _fit(self, X, y, X_val, y_val):
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")
        X, y_idx = self._validate_train(X, y)
        X_val, yv_idx = self._validate_val(X_val, y_val)
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        Xs = self._transform(X)
        if X_val is not None:
            folds = [(Xs, y_idx, self._transform(X_val), yv_idx)]
        elif self.cv and self.cv >= 2 and np.bincount(y_idx).min() >= self.cv:
            skf = StratifiedKFold(n_splits=int(self.cv), shuffle=True, random_state=self.random_state or 0)
            folds = [(Xs[a], y_idx[a], Xs[b], y_idx[b]) for a, b in skf.split(Xs, y_idx)]
        else:
            folds = []
        self.cv_results_: list[dict[str, float]] = []
        if folds:
            grid = [float(c) for c in (self.Cs if self.Cs is not None else np.logspace(-6, 6, 13))]
            for C in grid:
                self.cv_results_.append({"C": C, "score": self._evaluate(C, folds)})
            best = _best(self.cv_results_)
            if self.refine and len(grid) > 1:
                lo, hi = np.log10(best / 10), np.log10(best * 10)
                for C in np.logspace(lo, hi, int(self.refine) + 2)[1:-1]:
                    if not any(np.isclose(C, r["C"]) for r in self.cv_results_):
                        self.cv_results_.append({"C": float(C), "score": self._evaluate(float(C), folds)})
                best = _best(self.cv_results_)
            self.C_ = best
        else:
            self.C_ = 1.0
        X_fit, y_fit = Xs, y_idx
        if self.refit_on_val and X_val is not None:
            X_fit = np.vstack([Xs, self._transform(X_val)])
            y_fit = np.concatenate([y_idx, yv_idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = self._lr(self.C_).fit(X_fit, y_fit)
        self.coef_ = model.coef_.astype(np.float64)
        self.intercept_ = model.intercept_.astype(np.float64)
        self.n_iter_ = model.n_iter_.copy()
        return self

    def decision_function(self, X) -> np.ndarray:
        X = self._check_predict_input(X)
        scores = self._transform(X) @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X) -> np.ndarray:
        """Sigmoid (two classes) or softmax of the linear scores."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p1 = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - p1, p1])
        return softmax(scores)

    def _export_state(self):
        arrays = {"coef": self.coef_, "intercept": self.intercept_, "mean": self.mean_, "scale": self.scale_}
        return arrays, {"C": self.C_, "cv_results": self.cv_results_, "n_iter": self.n_iter_.tolist()}

    def _import_state(self, arrays, state):
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]
        self.mean_, self.scale_ = arrays["mean"], arrays["scale"]
        self.C_ = float(state["C"])
        self.cv_results_ = list(state["cv_results"])
        self.n_iter_ = np.asarray(state["n_iter"], dtype=np.int32)


def _best(results: list[dict[str, float]]) -> float:
    """Highest score; among ties (within 1e-9) the smallest C, i.e. the strongest regularisation."""
    top = max(r["score"] for r in results)
    return min(r["C"] for r in results if r["score"] >= top - 1e-9)
