"""Medical-image gate: zero-shot medical vs non-medical filter for backbones with an aligned text tower, run
before any prediction so that a holiday photo is not classified as a breast lesion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from breastclip.heads.zeroshot import ZeroShotHead

GATE_BANK = "medical_vs_nonmedical"


@dataclass(frozen=True)
class GateResult:
    """Per-image probability of being a medical image and the verdict at ``threshold``."""

    scores: np.ndarray
    is_medical: np.ndarray
    threshold: float

    @property
    def n_rejected(self) -> int:
        return int((~self.is_medical).sum())


class MedicalGate(ZeroShotHead):
    """Zero-shot head over the ``medical_vs_nonmedical`` bank; ``medical_score`` = P(medical).

    ``threshold`` (default 0.5) turns the score into a verdict. Build it with :meth:`from_backbone`; the text
    embeddings must come from an aligned text tower (CLIP family), otherwise ``fit`` refuses.
    """

    head_name = "medical_gate"

    def __init__(
        self,
        text_embeddings: np.ndarray | None = None,
        classes: Sequence[str] | None = ("medical", "non_medical"),
        text_aligned: bool = True,
        logit_scale: float = 100.0,
        threshold: float = 0.5,
        medical_class: str = "medical",
    ) -> None:
        super().__init__(text_embeddings=text_embeddings, classes=classes, text_aligned=text_aligned,
                         logit_scale=logit_scale)
        self.threshold = threshold
        self.medical_class = medical_class

    def fit(self, X, y=None, X_val=None, y_val=None):
        super().fit(X, y)
        if self.medical_class not in self.classes_.tolist():
            raise ValueError(f"medical_class {self.medical_class!r} is not among classes {self.classes_.tolist()}")
        return self

    def medical_score(self, X) -> np.ndarray:
        """Probability that each embedding shows a medical image."""
        j = self.classes_.tolist().index(self.medical_class)
        return self.predict_proba(X)[:, j]

    def check(self, X) -> GateResult:
        scores = self.medical_score(X)
        return GateResult(scores=scores, is_medical=scores >= float(self.threshold), threshold=float(self.threshold))

    @classmethod
    def from_backbone(cls, backbone, *, bank: str = GATE_BANK, threshold: float = 0.5,
                      logit_scale: float = 100.0, aligned: bool | None = None) -> MedicalGate:
        """Gate for a backbone with an aligned text tower, fitted (nothing to learn) and ready to ``check``.

        ``backbone`` may also be a bare ``encode_text`` callable; then say ``aligned`` explicitly."""
        from breastclip.prompts.loader import class_text_embeddings, load_bank, text_aligned

        b = load_bank(bank)
        T = class_text_embeddings(backbone, b)
        aligned = text_aligned(backbone) if aligned is None else aligned
        gate = cls(T, classes=list(b.classes), text_aligned=aligned, logit_scale=logit_scale,
                   threshold=threshold)
        return gate.fit(np.zeros((1, T.shape[1])))
