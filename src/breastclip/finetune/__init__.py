"""End-to-end fine-tuned CNN baselines (ResNet18/50, EfficientNet-Lite0) that write the predictions table."""

from breastclip.finetune.augment import AugmentConfig, build_augment
from breastclip.finetune.infer import FinetunedModel, load_finetuned
from breastclip.finetune.models import (
    ARCHITECTURES,
    ArchEntry,
    PretrainedWeightsUnavailable,
    build_model,
    list_architectures,
)
from breastclip.finetune.train import FinetuneConfig, FinetuneResult, finetune

__all__ = [
    "ARCHITECTURES",
    "ArchEntry",
    "AugmentConfig",
    "FinetuneConfig",
    "FinetuneResult",
    "FinetunedModel",
    "PretrainedWeightsUnavailable",
    "build_augment",
    "build_model",
    "finetune",
    "list_architectures",
    "load_finetuned",
]
