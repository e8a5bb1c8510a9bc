"""Classifier heads on cached embeddings: scikit-learn estimators on ``X (n, d)``, saved without pickle.

``HEADS`` maps a method name to its class (the methods a run trains and compares); ``load_head(path)`` rebuilds
any saved head, gate or OOD detector.
"""

from __future__ import annotations

from typing import Any

from breastclip.heads._torch_base import torch_threads as torch_threads  # one CPU thread for small heads
from breastclip.heads.attention_mil import AttentionMILHead
from breastclip.heads.ensemble import EnsembleHead
from breastclip.heads.fc import FCHead
from breastclip.heads.gate import GateResult, MedicalGate
from breastclip.heads.io import HeadFormatError, load_head, save_head
from breastclip.heads.linear_probe import LinearProbe
from breastclip.heads.losses import FocalLoss, effective_number_weights
from breastclip.heads.mlp import MLPHead
from breastclip.heads.neighbors import KNNHead, NearestClassMeanHead
from breastclip.heads.ood import EmbeddingOOD
from breastclip.heads.similarity_guided import SimilarityGuidedHead
from breastclip.heads.svm import RBFSVMHead
from breastclip.heads.tip_adapter import TipAdapter, TipAdapterF
from breastclip.heads.zeroshot import UnalignedTextError, ZeroShotHead, prompt_robustness

HEADS: dict[str, type] = {
    cls.head_name: cls
    for cls in (ZeroShotHead, LinearProbe, SimilarityGuidedHead, MLPHead, FCHead, TipAdapter, TipAdapterF, RBFSVMHead,
                KNNHead, NearestClassMeanHead, EnsembleHead,
                AttentionMILHead)
}
"""Classifier heads by method name."""

#: Constructor arguments that carry class text (from a backbone's text tower and a prompt bank), not hyperparameters.
TEXT_ARGUMENTS = ("text_embeddings", "text_aligned", "classes")


def make_head(name: str, *, text_embeddings: Any = None, text_aligned: bool = True, classes: Any = None,
              **params: Any) -> Any:
    """Build the head ``name`` from ``HEADS`` with ``params`` (scikit-learn's ``set_params``: an unknown one raises
    ``ValueError`` naming it); the text arguments go only to heads that take them.

    ``text_embeddings`` rows follow ``classes`` (zero-shot) or the sorted training labels (the other text heads).
    ``name`` may be any registry key; unknown names raise, listing the known ones.
    """
    if name not in HEADS:
        raise KeyError(f"unknown head {name!r}; known heads: {sorted(HEADS)}")
    head = HEADS[name]()
    takes = head.get_params(deep=False)
    text = {"text_embeddings": text_embeddings, "text_aligned": text_aligned, "classes": classes}
    return head.set_params(**{k: v for k, v in text.items() if k in takes}, **params)


SAVEABLE: dict[str, type] = {**HEADS, MedicalGate.head_name: MedicalGate, EmbeddingOOD.head_name: EmbeddingOOD}


def registry_name(cls: type) -> str:
    """Name under which ``cls`` is saved (its ``head_name``)."""
    name = getattr(cls, "head_name", "")
    if SAVEABLE.get(name) is not cls:
        raise ValueError(f"{cls.__name__} is not a registered head; known: {sorted(SAVEABLE)}")
    return name


__all__ = [
    "HEADS", "SAVEABLE", "TEXT_ARGUMENTS", "AttentionMILHead", "EmbeddingOOD", "EnsembleHead", "FCHead", "KNNHead",
    "NearestClassMeanHead",
    "RBFSVMHead", "FocalLoss", "GateResult", "HeadFormatError",
    "LinearProbe", "MLPHead", "MedicalGate", "SimilarityGuidedHead", "TipAdapter", "TipAdapterF",
    "UnalignedTextError", "ZeroShotHead", "effective_number_weights", "load_head", "make_head", "prompt_robustness",
    "registry_name", "save_head",
]
