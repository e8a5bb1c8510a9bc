"""SMOTETomek (and any other resampling) touches the training rows only, never validation rows."""

from __future__ import annotations

import numpy as np
from imblearn.combine import SMOTETomek

from breastclip.heads import MLPHead


def test_smotetomek_sees_only_training_rows(synthetic, monkeypatch):
    s = synthetic
    seen = []
    original = SMOTETomek.fit_resample

    def spy(self, X, y):
        seen.append((np.array(X, copy=True), np.array(y, copy=True)))
        return original(self, X, y)

    monkeypatch.setattr(SMOTETomek, "fit_resample", spy)
    X_val_before = s["X_val"].copy()
    head = MLPHead(smote=True, epochs=3, random_state=0).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    assert len(seen) == 1
    X_seen, y_seen = seen[0]
    np.testing.assert_array_equal(X_seen, s["X"])  # exactly the training rows, nothing else
    assert len(y_seen) == len(s["y"])
    val_rows = {r.tobytes() for r in s["X_val"]}
    assert not any(r.tobytes() in val_rows for r in X_seen)
    np.testing.assert_array_equal(s["X_val"], X_val_before)  # validation untouched
    counts = np.bincount(np.unique(s["y"], return_inverse=True)[1])
    assert head.n_train_rows_ != len(s["X"]) and head.n_train_rows_ > counts.max()  # resampled toward balance
    assert len(head.history_) == 3 and all(h["val_loss"] is not None for h in head.history_)


def test_no_resampling_by_default(synthetic, monkeypatch):
    s = synthetic

    def fail(self, X, y):
        raise AssertionError("SMOTETomek must not run unless smote=True")

    monkeypatch.setattr(SMOTETomek, "fit_resample", fail)
    head = MLPHead(epochs=2, random_state=0).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    assert head.n_train_rows_ == len(s["X"])
