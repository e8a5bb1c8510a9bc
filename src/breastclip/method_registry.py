"""The method registry: every kind of method a run can train, declared once.

A :class:`MethodKind` says what the method needs (image files or cached embeddings; no text, text when the backbone
has it, any text tower, or one aligned with the image space; validation data) and how it is built, saved and loaded.
Config validation, ``--offline``, the pipeline and ``predict`` read these entries; none of them names a method kind.
A ``[[methods]]`` table's ``head`` is a key of :data:`METHOD_KINDS`: every head of :data:`breastclip.heads.HEADS`,
and ``cnn``, the end-to-end fine-tuned CNN baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from breastclip.config import OFFLINE_CNN, ConfigError, ExperimentConfig, MethodSection
from breastclip.finetune import AugmentConfig, FinetuneConfig, FinetunedModel, load_finetuned
from breastclip.heads import HEADS, TEXT_ARGUMENTS, EnsembleHead, load_head, make_head


class Inputs(Enum):
    """What a method is trained on."""

    EMBEDDINGS = "embeddings"  # the backbone's cached image embeddings, X (n, d)
    IMAGES = "images"  # the image files themselves (trained end to end)


class TextUse(Enum):
    """What a method needs from the backbone's text tower (class prompts embedded by it)."""

    NONE = "none"
    OPTIONAL = "optional"  # uses class text embeddings when the backbone has a text tower, runs without
    REQUIRED = "required"  # needs a text tower (aligned or not)
    ALIGNED = "aligned"  # needs a text tower aligned with the image space (zero-shot)


@dataclass(frozen=True)
class MethodKind:
    """One kind of method: what it needs, and how it is built (``build``), saved and loaded (``load``)."""

    name: str
    inputs: Inputs
    text: TextUse
    uses_validation: bool  # fitted with the validation split (early stopping, model selection)
    description: str
    #: ``(method, cfg, text)`` -> the unfitted estimator (heads) or the training config (the CNN baseline);
    #: unknown or invalid hyperparameters raise :class:`ConfigError` naming the valid ones.
    build: Callable[[MethodSection, ExperimentConfig, Mapping[str, Any] | None], Any]
    #: a saved model folder -> the fitted model (``predict_proba`` on embeddings or on images)
    load: Callable[[Path], Any]
    #: hyperparameters ``--offline`` sets (weights that need no download)
    offline_params: Mapping[str, Any] = field(default_factory=dict)
    #: set for a kind built from the other methods of its backbone (the ensemble of the top-k by CV figure) when
    #: ``evaluation.selection = "cv"``: their fitted models -> its fitted model, with nothing refitted. Such a kind
    #: runs after those methods; on the label-efficiency subsets it pools its members' fits on each subset, in the
    #: same way; see :attr:`pools_methods`
    pool: Callable[[Sequence[Any]], Any] | None = None
    #: hyperparameters the run reads for this kind and never hands to the estimator (the ensemble's ``top_k``)
    run_params: tuple[str, ...] = ()

    @property
    def pools_methods(self) -> bool:
        """Whether the method is built from other methods' cross-validated results and fitted models."""
        return self.pool is not None

    def estimator_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` without the ones the run reads (:attr:`run_params`)."""
        return {k: v for k, v in params.items() if k not in self.run_params}

    def unmet_need(self, backbone: str, has_text: bool, text_aligned: bool) -> str | None:
        """Why this method cannot run on ``backbone`` (None when it can)."""
        if self.text is TextUse.ALIGNED and not text_aligned:
            return (f"{self.name} needs a text tower aligned with the image space; {backbone} has "
                    f"{'an unaligned text encoder' if has_text else 'no text tower'}")
        if self.text is TextUse.REQUIRED and not has_text:
            return f"{self.name} needs a text tower; {backbone} has none"
        return None

    def uses_text(self, has_text: bool) -> bool:
        """Whether the run embeds the method's prompt bank on a backbone with (``has_text``) or without a text tower."""
        return self.text is not TextUse.NONE and has_text


# ---- heads on embeddings ------------------------------------------------------------------------------------
def _build_head(method: MethodSection, cfg: ExperimentConfig, text: Mapping[str, Any] | None) -> Any:
    """The head with the method's hyperparameters (checked against its ``get_params``), the run's seed and device,
    and the class text embeddings where it takes them."""
    valid = set(HEADS[method.head]().get_params(deep=False))
    params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in method.params.items()}  # tuples
    unknown = sorted(set(params) - (valid - set(TEXT_ARGUMENTS)))
    if unknown:
        raise ConfigError(f"method '{method.name}': unknown hyperparameter(s) {unknown} for head "
                          f"'{method.head}'; valid: {', '.join(sorted(valid - set(TEXT_ARGUMENTS)))}")
    if "random_state" in valid and params.get("random_state") is None:
        params["random_state"] = cfg.experiment.seed
    if "device" in valid and cfg.embed.device and "device" not in params:
        params["device"] = cfg.embed.device
    return make_head(method.head, **{k: v for k, v in (text or {}).items() if v is not None}, **params)


def _head_kind(name: str, text: TextUse, uses_validation: bool, **capabilities: Any) -> MethodKind:
    doc = (HEADS[name].__doc__ or name).strip().splitlines()[0]
    return MethodKind(name, Inputs.EMBEDDINGS, text, uses_validation, doc, _build_head, load_head, **capabilities)


# ---- the end-to-end CNN baseline ----------------------------------------------------------------------------
def finetune_config(method: MethodSection, cfg: ExperimentConfig) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from the method's params (unknown keys are errors naming the valid ones)."""
    valid = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name != "method"]
    params = dict(method.params)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"method '{method.name}' ({method.head}): unknown hyperparameter(s) {unknown}; valid: "
                          f"{', '.join(valid)}")
    if isinstance(params.get("augmentation"), dict):
        aug_valid = [f.name for f in dataclasses.fields(AugmentConfig)]
        bad = sorted(set(params["augmentation"]) - set(aug_valid))
        if bad:
            raise ConfigError(f"method '{method.name}': unknown augmentation key(s) {bad}; valid: "
                              f"{', '.join(aug_valid)}")
        params["augmentation"] = AugmentConfig(**params["augmentation"])
    params.setdefault("seed", cfg.experiment.seed)
    if cfg.embed.device and "device" not in params:
        params["device"] = cfg.embed.device
    try:
        return FinetuneConfig(method=method.name, **params)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"method '{method.name}' ({method.head}): {e}") from e


def _build_cnn(method: MethodSection, cfg: ExperimentConfig, text: Mapping[str, Any] | None) -> FinetuneConfig:
    return finetune_config(method, cfg)


def _load_cnn(path: Path) -> FinetunedModel:
    return load_finetuned(path)


CNN = MethodKind("cnn", Inputs.IMAGES, TextUse.NONE, True,
                 "a CNN fine-tuned end to end on the images (torchvision / efficientnet-lite), the baseline",
                 _build_cnn, _load_cnn, offline_params={"arch": OFFLINE_CNN})

#: Every method kind by the name a ``[[methods]]`` table gives as ``head``.
METHOD_KINDS: dict[str, MethodKind] = {k.name: k for k in (
    _head_kind("zeroshot", TextUse.ALIGNED, uses_validation=False),
    _head_kind("linear_probe", TextUse.NONE, uses_validation=True),
    _head_kind("similarity_guided", TextUse.REQUIRED, uses_validation=True),
    _head_kind("mlp", TextUse.NONE, uses_validation=True),
    _head_kind("fc", TextUse.NONE, uses_validation=True),
    _head_kind("tip_adapter", TextUse.OPTIONAL, uses_validation=True),
    _head_kind("tip_adapter_f", TextUse.OPTIONAL, uses_validation=True),
    _head_kind("svm_rbf", TextUse.NONE, uses_validation=False),  # C and gamma by internal CV / the grid
    _head_kind("knn", TextUse.NONE, uses_validation=False),
    _head_kind("simpleshot", TextUse.NONE, uses_validation=False),
    # the top ``top_k`` (default 3) methods of its backbone by CV figure, each at its chosen point
    _head_kind("ensemble", TextUse.NONE, uses_validation=True, pool=EnsembleHead.from_fitted, run_params=("top_k",)),
    _head_kind("attention_mil", TextUse.NONE, uses_validation=True),  # bags of tile embeddings (tile views)
    CNN,
)}


def method_kind(name: str) -> MethodKind:
    """The registered kind ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    try:
        return METHOD_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown head '{name}'; available: {', '.join(sorted(METHOD_KINDS))} (cnn: the "
                          f"end-to-end CNN baseline)") from None
