"""Explainability: Grad-CAM overlays for fine-tuned CNNs and CLIP image towers, with a ROAD faithfulness check."""

from breastclip.explain.faithfulness import DeletionCurves, deletion_curves, plot_deletion
from breastclip.explain.gradcam import (
    CamModel,
    CamOutput,
    GradCAMExplainer,
    SimilarityScores,
    cam_model_for_backbone,
    cam_model_for_finetuned,
    default_target_layers,
    vit_reshape_transform,
)
from breastclip.explain.localisation import localisation_scores
from breastclip.explain.overlays import ExplainResult, collect_images, explain_images, overlay

__all__ = [
    "CamModel",
    "CamOutput",
    "DeletionCurves",
    "ExplainResult",
    "GradCAMExplainer",
    "SimilarityScores",
    "cam_model_for_backbone",
    "cam_model_for_finetuned",
    "collect_images",
    "default_target_layers",
    "deletion_curves",
    "explain_images",
    "localisation_scores",
    "overlay",
    "plot_deletion",
    "vit_reshape_transform",
]
