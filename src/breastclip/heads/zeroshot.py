"""Zero-shot classification: cosine similarity between image embeddings and class text embeddings (prompt
ensembles averaged in embedding space, Radford et al. 2021), plus a prompt-robustness report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.utils.validation import validate_data

from breastclip.heads._base import BaseHead, l2_normalize, softmax

if TYPE_CHECKING:
    from breastclip.prompts.loader import PromptBank


class UnalignedTextError(ValueError):
    """Zero-shot needs image and text embeddings in one shared space (a CLIP-style backbone)."""


class ZeroShotHead(BaseHead):
    """``softmax(logit_scale * cos(x, t_k))`` over the class text embeddings ``text_embeddings (K, d)``.

    ``classes`` names the rows of ``text_embeddings``; when None, ``fit`` takes ``classes_ = np.unique(y)`` and
    the rows must follow that sorted order. Nothing is learned: ``fit`` only checks shapes and labels. Refuses
    ``text_aligned=False`` (e.g. an ImageNet CNN paired with a sentence encoder): there is no shared space.
    """

    head_name = "zeroshot"

    def __init__(
        self,
        text_embeddings: np.ndarray | None = None,
        classes: Sequence[str] | None = None,
        text_aligned: bool = True,
        logit_scale: float = 100.0,
    ) -> None:
        self.text_embeddings = text_embeddings
        self.classes = classes
        self.text_aligned = text_aligned
        self.logit_scale = logit_scale

    def fit(self, X, y=None, X_val=None, y_val=None):
        """Check dimensions (and labels when ``y`` is given); learns nothing."""
        if not self.text_aligned:
            raise UnalignedTextError(
                "zero-shot needs a backbone whose text and image towers share one embedding space; this one is "
                "unaligned (text_aligned=False). Use the similarity-guided head, which learns a projection."
            )
        if self.text_embeddings is None:
            raise ValueError("ZeroShotHead needs text_embeddings (n_classes, d): see breastclip.prompts")
        T = np.asarray(self.text_embeddings, dtype=np.float64)
        if T.ndim != 2:
            raise ValueError(f"text_embeddings must be 2-D (n_classes, d), got shape {T.shape}")
        if y is None:
            validate_data(self, X, dtype=[np.float64, np.float32])
            if self.classes is None:
                raise ValueError("give classes (names of the text_embeddings rows) or labels y")
            self.classes_ = np.asarray(list(self.classes))
        elif self.classes is None:
            self._validate_train(X, y, min_classes=1)
        else:
            validate_data(self, X, y, dtype=[np.float64, np.float32])
            self.classes_ = np.asarray(list(self.classes))
            self._encode(y)
        if len(self.classes_) != T.shape[0]:
            raise ValueError(f"{T.shape[0]} text embeddings for {len(self.classes_)} classes {self.classes_.tolist()}")
        if T.shape[1] != self.n_features_in_:
            raise ValueError(
                f"image embeddings have {self.n_features_in_} dimensions but text embeddings {T.shape[1]}: "
                "they come from different backbones"
            )
        self.text_ = l2_normalize(T)
        return self

    def similarity(self, X) -> np.ndarray:
        """Cosine similarity (n, K) of each image to each class."""
        X = self._check_predict_input(X)
        return l2_normalize(X) @ self.text_.T

    def predict_proba(self, X) -> np.ndarray:
        return softmax(float(self.logit_scale) * self.similarity(X))

    def _export_state(self):
        return {}, {}

    def _import_state(self, arrays, state):
        self.text_ = l2_normalize(np.asarray(self.text_embeddings, dtype=np.float64))

    @classmethod
    def from_bank(cls, backbone, bank: PromptBank | str, *, classes: Sequence[str] | None = None,
                  logit_scale: float = 100.0) -> ZeroShotHead:
        """Zero-shot head for a backbone and a prompt bank (``classes`` reorders/matches the bank's classes)."""
        from breastclip.prompts.loader import class_text_embeddings, load_bank, text_aligned

        bank = load_bank(bank) if isinstance(bank, str) else bank
        if classes is not None:
            bank = bank.aligned_to(classes)
        head = cls(class_text_embeddings(backbone, bank), classes=list(bank.classes),
                   text_aligned=text_aligned(backbone), logit_scale=logit_scale)
        return head


def _auc(y_idx: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    present = np.unique(y_idx)
    if len(present) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return float(roc_auc_score(y_idx, proba[:, 1]))
    if len(present) < proba.shape[1]:
        return float("nan")
    return float(roc_auc_score(y_idx, proba, multi_class="ovr"))


def prompt_robustness(
    encode_text: Callable[[list[str]], np.ndarray],
    bank: PromptBank,
    X: np.ndarray,
    y: Sequence[str],
    *,
    logit_scale: float = 100.0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Zero-shot accuracy and AUC of every prompt variant of a bank, and their spread.

    Variants: each template alone (averaged over the class descriptions), each description index alone
    (averaged over templates; classes with fewer descriptions reuse theirs cyclically), and the full ensemble.
    Returns the per-variant table and a summary (mean, std, min, max of accuracy and AUC over the single variants,
    and the ensemble's figures). ``encode_text`` maps prompts to L2-normalised embeddings.
    """
    labels = np.asarray([str(v) for v in y])
    unknown = sorted(set(labels) - set(bank.classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of prompt bank {bank.name!r} ({list(bank.classes)})")
    y_idx = np.array([bank.classes.index(v) for v in labels])
    Xn = l2_normalize(np.asarray(X, dtype=np.float64))
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            for t, e in zip(todo, np.asarray(encode_text(todo), dtype=np.float64), strict=True):
                cache[t] = e
        return l2_normalize(np.mean([l2_normalize(cache[t]) for t in texts], axis=0))

    variants: list[tuple[str, str, list[list[str]]]] = []
    for ti, tpl in enumerate(bank.templates):
        variants.append(("template", f"template {ti}: {tpl}",
                         [[tpl.format(p) for p in bank.prompts[c]] for c in bank.classes]))
    n_desc = max(len(bank.prompts[c]) for c in bank.classes)
    for j in range(n_desc):
        variants.append(("prompt", f"prompt {j}",
                         [[t.format(bank.prompts[c][j % len(bank.prompts[c])]) for t in bank.templates]
                          for c in bank.classes]))
    variants.append(("ensemble", "all prompts", [bank.texts(c) for c in bank.classes]))
    rows = []
    for kind, name, texts in variants:
        T = np.stack([embed(t) for t in texts])
        proba = softmax(logit_scale * Xn @ T.T)
        rows.append({"kind": kind, "variant": name, "accuracy": float(np.mean(proba.argmax(1) == y_idx)),
                     "auc": _auc(y_idx, proba)})
    table = pd.DataFrame(rows)
    single = table[table["kind"] != "ensemble"]
    ens = table[table["kind"] == "ensemble"].iloc[0]
    summary = {"n_variants": int(len(single)), "ensemble_accuracy": float(ens["accuracy"]),
               "ensemble_auc": float(ens["auc"])}
    for m in ("accuracy", "auc"):
        v = single[m].to_numpy(dtype=float)
        summary.update({f"{m}_mean": float(np.nanmean(v)), f"{m}_std": float(np.nanstd(v)),
                        f"{m}_min": float(np.nanmin(v)), f"{m}_max": float(np.nanmax(v))})
    return table, summary
