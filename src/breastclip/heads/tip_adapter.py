"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022) on cached embeddings: a key-value cache of k shots per
class blended with zero-shot text logits; -F fine-tunes the cache keys. alpha / beta are searched on validation."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from breastclip.heads._base import BaseHead, l2_normalize, softmax
from breastclip.heads._torch_base import torch_threads


class TipAdapter(BaseHead):
    """``logits = logit_scale * x t^T + alpha * exp(-beta (1 - x K^T)) V`` with keys ``K`` the L2-normalised
    embeddings of ``shots`` training images per class (all when None) and values ``V`` their one-hot labels.

    ``text_embeddings (K, d)`` in ``classes_`` order supply the zero-shot term; without them, or with an
    unaligned text tower, the head is cache-only (``uses_text_`` says which). With validation data ``alpha`` and
    ``beta`` are chosen on a grid by validation log loss (the paper searches them on validation too).
    ``fine_tune=True`` is Tip-Adapter-F: the keys become trainable and are trained with cross-entropy on the shots
    (AdamW, cosine schedule, ``epochs``), keeping the epoch of lowest validation loss. ``center`` subtracts the
    training mean before the cache's cosine affinities (helps non-negative CNN features, whose cosines all sit
    near 1); the zero-shot term always uses the raw embeddings.
    """

    head_name = "tip_adapter"

    def __init__(
        self,
        text_embeddings: np.ndarray | None = None,
        text_aligned: bool = True,
        shots: int | None = 16,
        alpha: float = 1.0,
        beta: float = 5.5,
        search: bool = True,
        logit_scale: float = 100.0,
        center: bool = False,
        fine_tune: bool = False,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 1e-3,
        random_state: int | None = None,
    ) -> None:
        self.text_embeddings = text_embeddings
        self.text_aligned = text_aligned
        self.shots = shots
        self.alpha = alpha
        self.beta = beta
        self.search = search
        self.logit_scale = logit_scale
        self.center = center
        self.fine_tune = fine_tune
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state

    # ---- parts --------------------------------------------------------------------------------------------
    def _zero_shot_logits(self, Xn: np.ndarray) -> np.ndarray:
        if not self.uses_text_:
            return np.zeros((len(Xn), len(self.classes_)))
        return float(self.logit_scale) * Xn @ self.text_.T

    def _cache_features(self, X: np.ndarray) -> np.ndarray:
        return l2_normalize(X - self.mean_)

    def _cache_logits(self, Xc: np.ndarray, beta: float, keys: np.ndarray | None = None) -> np.ndarray:
        keys = self.keys_ if keys is None else keys
        affinity = Xc @ keys.T
        return np.exp(-beta * (1.0 - affinity)) @ self.values_

    def _logits(self, X, alpha, beta, keys=None):
        return self._zero_shot_logits(l2_normalize(X)) + alpha * self._cache_logits(self._cache_features(X), beta, keys)

    def _select_shots(self, y_idx: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        chosen = []
        for k in range(len(self.classes_)):
            rows = np.flatnonzero(y_idx == k)
            if self.shots is not None and len(rows) > int(self.shots):
                rows = np.sort(rng.choice(rows, int(self.shots), replace=False))
            chosen.append(rows)
        return np.concatenate(chosen)

    # ---- fit ----------------------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None):
        """Build the cache from ``shots`` per class; fine-tune (``-F``) and search alpha / beta on validation."""
        X, y_idx = self._validate_train(X, y)
        X_val, yv_idx = self._validate_val(X_val, y_val)
        rs = self.random_state
        seed = int(rs) if isinstance(rs, (int, np.integer)) else int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
        n_classes = len(self.classes_)
        self.uses_text_ = self.text_embeddings is not None and bool(self.text_aligned)
        if self.uses_text_:
            T = np.asarray(self.text_embeddings, dtype=np.float64)
            if T.shape != (n_classes, X.shape[1]):
                raise ValueError(f"text_embeddings has shape {T.shape}, expected ({n_classes}, {X.shape[1]}) in "
                                 f"classes_ order {self.classes_.tolist()}")
            self.text_ = l2_normalize(T)
        else:
            self.text_ = np.zeros((n_classes, X.shape[1]))
        self.mean_ = X.mean(axis=0) if self.center else np.zeros(X.shape[1])
        idx = self._select_shots(y_idx, seed)
        self.shot_indices_ = idx
        self.keys_ = self._cache_features(X[idx])
        self.values_ = np.eye(n_classes)[y_idx[idx]]
        self.history_: list[dict[str, Any]] = []
        if self.fine_tune:
            with torch_threads("cpu"):
                self._fine_tune(X[idx], y_idx[idx], X_val, yv_idx, seed)
        self.alpha_, self.beta_ = float(self.alpha), float(self.beta)
        if self.search and X_val is not None and yv_idx is not None:
            self.alpha_, self.beta_ = self._search(X_val, yv_idx)
        return self

    def _search(self, Xv: np.ndarray, yv: np.ndarray) -> tuple[float, float]:
        rows = np.arange(len(yv))
        best = (np.inf, float(self.alpha), float(self.beta))
        zs = self._zero_shot_logits(l2_normalize(Xv))
        Xc = self._cache_features(Xv)
        for beta in np.linspace(0.5, 10.0, 20):
            cache = self._cache_logits(Xc, beta)
            scale = np.abs(zs).max() if self.uses_text_ else 10.0
            for alpha in np.geomspace(0.01, 10.0, 19) * scale / max(np.abs(cache).max(), 1e-12):
                p = softmax(zs + alpha * cache)
                loss = -float(np.mean(np.log(np.clip(p[rows, yv], 1e-15, 1.0))))
                if loss < best[0] - 1e-12:
                    best = (loss, float(alpha), float(beta))
        return best[1], best[2]

    def _fine_tune(self, X_shots, y_shots, X_val, yv, seed: int) -> None:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        keys = torch.nn.Parameter(torch.as_tensor(self.keys_, dtype=torch.float32).clone())
        values = torch.as_tensor(self.values_, dtype=torch.float32)
        text = torch.as_tensor(self.text_, dtype=torch.float32)
        alpha, beta, scale = float(self.alpha), float(self.beta), float(self.logit_scale) * float(self.uses_text_)
        opt = torch.optim.AdamW([keys], lr=self.lr, eps=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(self.epochs)))
        def pair(X):
            return (torch.as_tensor(l2_normalize(X), dtype=torch.float32),
                    torch.as_tensor(self._cache_features(X), dtype=torch.float32))

        xt, ct = pair(X_shots)
        yt = torch.as_tensor(y_shots, dtype=torch.long)
        xv, cv = pair(X_val) if X_val is not None else (None, None)

        def logits(x, c):
            aff = c @ F.normalize(keys, dim=1).T
            return scale * x @ text.T + alpha * torch.exp(-beta * (1.0 - aff)) @ values

        best: tuple[float, torch.Tensor | None, int] = (math.inf, None, 0)
        for epoch in range(1, int(self.epochs) + 1):
            total = 0.0
            for b in torch.randperm(len(xt), generator=gen).split(max(1, int(self.batch_size))):
                opt.zero_grad()
                loss = F.cross_entropy(logits(xt[b], ct[b]), yt[b])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            sched.step()
            row: dict[str, Any] = {"epoch": epoch, "train_loss": total / len(xt), "val_loss": None}
            if xv is not None:
                with torch.no_grad():
                    val_loss = float(F.cross_entropy(logits(xv, cv), torch.as_tensor(yv)))
                row["val_loss"] = val_loss
                if val_loss < best[0]:
                    best = (val_loss, copy.deepcopy(keys.detach()), epoch)
            self.history_.append(row)
        final = best[1] if best[1] is not None else keys.detach()
        self.best_epoch_ = best[2] if best[1] is not None else int(self.epochs)
        self.keys_ = F.normalize(final, dim=1).double().numpy()

    # ---- predict ------------------------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        X = self._check_predict_input(X)
        return softmax(self._logits(X, self.alpha_, self.beta_))

    def _export_state(self):
        arrays = {"keys": self.keys_, "values": self.values_, "text": self.text_, "shot_indices": self.shot_indices_,
                  "mean": self.mean_}
        state = {"alpha": self.alpha_, "beta": self.beta_, "uses_text": bool(self.uses_text_),
                 "history": self.history_, "best_epoch": getattr(self, "best_epoch_", None)}
        return arrays, state

    def _import_state(self, arrays, state):
        self.keys_, self.values_, self.text_ = arrays["keys"], arrays["values"], arrays["text"]
        self.shot_indices_, self.mean_ = arrays["shot_indices"], arrays["mean"]
        self.alpha_, self.beta_ = float(state["alpha"]), float(state["beta"])
        self.uses_text_ = bool(state["uses_text"])
        self.history_ = list(state["history"])
        if state.get("best_epoch") is not None:
            self.best_epoch_ = int(state["best_epoch"])


class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: :class:`TipAdapter` with trainable cache keys (``fine_tune=True``)."""

    head_name = "tip_adapter_f"

    def __init__(
        self,
        text_embeddings: np.ndarray | None = None,
        text_aligned: bool = True,
        shots: int | None = 16,
        alpha: float = 1.0,
        beta: float = 5.5,
        search: bool = True,
        logit_scale: float = 100.0,
        center: bool = False,
        fine_tune: bool = True,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 1e-3,
        random_state: int | None = None,
    ) -> None:
        super().__init__(text_embeddings=text_embeddings, text_aligned=text_aligned, shots=shots, alpha=alpha,
                         beta=beta, search=search, logit_scale=logit_scale, center=center, fine_tune=fine_tune, epochs=epochs,
                         batch_size=batch_size, lr=lr, random_state=random_state)
