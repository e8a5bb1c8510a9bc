"""Ensemble head: the mean probability of several heads, each given by its registry name and hyperparameters.

With ``evaluation.selection = "cv"`` the run fills ``members`` with the top-k configurations by cross-validated
selection figure (see :mod:`breastclip.heads.model_selection`); it can also be written out by hand. Members are
saved inside the ensemble's own safetensors file (prefixed arrays), so the whole ensemble loads without pickle.
:meth:`EnsembleHead.from_fitted` assembles one from heads already fitted on the same rows (the run's refitted
methods), so a run never fits the same member twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from breastclip.heads._base import BaseHead


def _member_class(name: str) -> type:
    from breastclip.heads import HEADS  # the registry imports this module

    if name not in HEADS or name in ("ensemble", "zeroshot"):
        raise ValueError(f"ensemble member {name!r} is not a trainable head; known: "
                         f"{sorted(set(HEADS) - {'ensemble', 'zeroshot'})}")
    return HEADS[name]


class EnsembleHead(BaseHead):
    """``members``: a tuple of ``(head name, {hyperparameters})`` pairs (at least one); ``weights``: optional
    non-negative weight per member (equal by default). Every member is fitted on the same rows; ``predict_proba`` is
    the weighted mean of theirs."""

    head_name = "ensemble"

    def __init__(self, members: tuple = (), weights: tuple[float, ...] | None = None) -> None:
        self.members = members
        self.weights = weights

    @classmethod
    def from_fitted(cls, estimators: Sequence[BaseHead], weights: tuple[float, ...] | None = None) -> EnsembleHead:
        """The ensemble of heads already fitted on the same rows, without refitting them. ``members`` records each
        one's registry name and hyperparameters (array-valued ones, such as text embeddings, travel with the saved
        weights), so ``EnsembleHead(members=...).fit`` on those rows rebuilds the same model from deterministic
        (seeded) heads."""
        from breastclip.heads import registry_name  # the registry imports this module

        if not estimators:
            raise ValueError("EnsembleHead.from_fitted needs at least one fitted head")
        first = estimators[0]
        for est in estimators:
            if not hasattr(est, "classes_"):
                raise ValueError(f"{type(est).__name__} is not fitted: call fit before from_fitted")
            if list(est.classes_) != list(first.classes_) or est.n_features_in_ != first.n_features_in_:
                raise ValueError(f"ensemble members must be fitted on the same classes and features: "
                                 f"{type(est).__name__} has {list(est.classes_)} / {est.n_features_in_}, "
                                 f"{type(first).__name__} {list(first.classes_)} / {first.n_features_in_}")
        members = tuple((registry_name(type(est)), {k: v for k, v in est.get_params(deep=False).items()
                                                    if not isinstance(v, np.ndarray)}) for est in estimators)
        ens = cls(members=members, weights=weights)
        ens.classes_ = np.asarray(first.classes_)
        ens.n_features_in_ = int(first.n_features_in_)
        ens.weights_ = ens._weights(len(members))
        ens.estimators_ = list(estimators)
        return ens

    def _build(self) -> list[BaseHead]:
        if not self.members:
            raise ValueError("EnsembleHead needs at least one member: members=(('svm_rbf', {'C': 10.0}), ...)")
        heads = []
        for m in self.members:
            if not (isinstance(m, (tuple, list)) and len(m) == 2 and isinstance(m[1], dict)):
                raise ValueError(f"each ensemble member must be (head name, {{hyperparameters}}), got {m!r}")
            heads.append(_member_class(m[0])(**m[1]))
        return heads

    def _weights(self, n: int) -> np.ndarray:
        if self.weights is None:
            return np.full(n, 1.0 / n)
        w = np.asarray(self.weights, dtype=float)
        if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {n} non-negative numbers with a positive sum, got {self.weights!r}")
        return w / w.sum()

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit every member on ``X, y`` (validation data goes to members that take it)."""
        X, y_idx = self._validate_train(X, y)
        X_val, yv = self._validate_val(X_val, y_val)
        self.weights_ = self._weights(len(self.members) if self.members else 1)
        self.estimators_ = []
        for head in self._build():
            est = clone(head)
            if X_val is not None:
                est.fit(X, y_idx, X_val, yv)
            else:
                est.fit(X, y_idx)
            self.estimators_.append(est)
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = self._check_predict_input(X)
        return sum(w * est.predict_proba(X) for w, est in zip(self.weights_, self.estimators_, strict=True))

    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {"weights": self.weights_}
        states = []
        for k, est in enumerate(self.estimators_):
            a, s = est._export_state()
            arrays.update({f"{k}.{name}": v for name, v in a.items()})
            arrays.update({f"param{k}.{name}": v for name, v in est.get_params(deep=False).items()
                           if isinstance(v, np.ndarray)})  # not in ``members`` (JSON): text embeddings
            states.append(s)
        return arrays, {"members": states}

    def _import_state(self, arrays, state):
        self.weights_ = arrays["weights"]
        self.estimators_ = []
        for k, (head, s) in enumerate(zip(self._build(), state["members"], strict=True)):
            prefix, params = f"{k}.", f"param{k}."
            head.set_params(**{n[len(params):]: v for n, v in arrays.items() if n.startswith(params)})
            head.classes_ = np.arange(len(self.classes_))  # members are fitted on integer labels
            head.n_features_in_ = self.n_features_in_
            head._import_state({n[len(prefix):]: v for n, v in arrays.items() if n.startswith(prefix)}, s)
            self.estimators_.append(head)
