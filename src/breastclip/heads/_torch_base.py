"""The shared training loop of the torch heads: seeded, mini-batch Adam, per-epoch ``history_`` of training and
validation loss, best epoch by validation loss, optional early stopping. CPU by default (``device``)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from torch import nn

from breastclip.heads._base import BaseHead


@contextmanager
def torch_threads(device: torch.device | str | None) -> Iterator[None]:
    """One intra-op thread on CPU while a head trains or predicts: its matrices are tiny (batch x embedding), so
    extra threads only add synchronisation, and on a busy machine they make training tens of times slower."""
    if torch.device(device or "cpu").type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchHead(BaseHead):
    """Base of heads trained with torch. Subclasses implement ``_build_module`` and ``_make_loss``.

    Common hyperparameters (subclasses list them in their own ``__init__``): ``epochs``, ``batch_size``, ``lr``,
    ``weight_decay``, ``patience`` (early stopping on validation loss; None = off), ``validation_fraction`` (held
    out of the training rows when no ``X_val`` is given; 0 = none, then the last epoch is kept),
    ``random_state``, ``device``.
    """

    # ---- hooks --------------------------------------------------------------------------------------------
    def _build_module(self, n_features: int, n_classes: int) -> nn.Module:
        raise NotImplementedError

    def _make_loss(self, y_train: np.ndarray, n_classes: int):
        """Callable ``(module, xb, logits, yb) -> scalar loss`` used for training and validation loss."""
        raise NotImplementedError

    def _make_scheduler(self, optimizer: torch.optim.Optimizer):
        return None

    def _resample(self, X: np.ndarray, y: np.ndarray, rng_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Training-rows-only resampling hook (SMOTETomek in the MLP head). Never sees validation rows."""
        return X, y

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # ---- fit / predict ------------------------------------------------------------------------------------
    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        return int(rs)

    def _torch_device(self) -> torch.device:
        return torch.device(self.device or "cpu")

    def fit(self, X, y, X_val=None, y_val=None):
        """Train on ``X, y``; keep the epoch of lowest validation loss when validation data exist."""
        with torch_threads(self.device):
            return self._fit(X, y, X_val, y_val)

    def _fit(self, X, y, X_val, y_val):
        X, y_idx = self._validate_train(X, y)
        X_val, yv_idx = self._validate_val(X_val, y_val)
        seed = self.seed_ = self._seed()
        if X_val is None and self.validation_fraction and self.validation_fraction > 0:
            X, X_val, y_idx, yv_idx = train_test_split(
                X, y_idx, test_size=self.validation_fraction, random_state=seed, stratify=y_idx
            )
        k = len(self.classes_)
        X_tr, y_tr = self._resample(X, y_idx, seed)
        self.n_train_rows_ = int(len(X_tr))
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        device = self._torch_device()
        module = self._build_module(X.shape[1], k).to(device)
        loss_fn = self._make_loss(y_tr, k)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = self._make_scheduler(optimizer)
        xt = torch.as_tensor(X_tr, dtype=torch.float32, device=device)
        yt = torch.as_tensor(y_tr, dtype=torch.long, device=device)
        xv = None if X_val is None else torch.as_tensor(X_val, dtype=torch.float32, device=device)
        yv = None if yv_idx is None else torch.as_tensor(yv_idx, dtype=torch.long, device=device)
        history: list[dict[str, Any]] = []
        best_loss, best_state, best_epoch, stale = np.inf, None, 0, 0
        for epoch in range(1, int(self.epochs) + 1):
            module.train()
            total, seen = 0.0, 0
            for idx in _batches(len(xt), int(self.batch_size), gen):
                xb, yb = xt[idx.to(device)], yt[idx.to(device)]
                optimizer.zero_grad()
                loss = loss_fn(module, xb, module(xb), yb)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            if scheduler is not None:
                scheduler.step()
            row: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": None}
            if xv is not None:
                module.eval()
                with torch.no_grad():
                    row["val_loss"] = float(loss_fn(module, xv, module(xv), yv))
                if row["val_loss"] < best_loss - 1e-12:
                    best_loss, best_state, best_epoch, stale = row["val_loss"], copy.deepcopy(module.state_dict()), epoch, 0
                else:
                    stale += 1
            history.append(row)
            if xv is not None and self.patience is not None and stale >= int(self.patience):
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        else:
            best_epoch = len(history)
        self.module_ = module.double().eval()  # float64 inference: batch-size invariant probabilities
        self.history_ = history
        self.best_epoch_ = best_epoch
        return self

    def _logits(self, X: np.ndarray) -> np.ndarray:
        device = self._torch_device()
        out = []
        step = max(1, min(4096, (1 << 22) // max(1, X.shape[1])))  # <= 32 MB of float64 per chunk (wide MIL bags)
        with torch.no_grad(), torch_threads(device):
            for start in range(0, len(X), step):
                xb = torch.as_tensor(X[start:start + step], dtype=torch.float64, device=device)
                out.append(self.module_(xb).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)))

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the head's logits, in ``classes_`` order."""
        check_is_fitted(self, "module_")
        X = self._check_predict_input(X)
        logits = self._logits(X)
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    # ---- persistence --------------------------------------------------------------------------------------
    def _export_state(self):
        arrays = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        arrays = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in arrays.items()}
        state = {"history": self.history_, "best_epoch": int(self.best_epoch_), "n_train_rows": self.n_train_rows_,
                 "seed": int(self.seed_)}
        state.update(self._extra_state())
        return arrays, state

    def _import_state(self, arrays, state):
        self.seed_ = int(state["seed"])
        self._load_extra_state(state)
        module = self._build_module(self.n_features_in_, len(self.classes_))
        module = module.double()
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        self.module_ = module.to(self._torch_device()).eval()
        self.history_ = list(state["history"])
        self.best_epoch_ = int(state["best_epoch"])
        self.n_train_rows_ = int(state["n_train_rows"])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing batch of one row joins the previous one (BatchNorm needs two)."""
    perm = torch.randperm(n, generator=gen)
    batches = list(perm.split(max(1, batch_size)))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat([batches[-2], batches.pop()])
    return batches
