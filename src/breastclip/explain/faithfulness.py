"""Is the heat map faithful? A ROAD deletion curve against random maps (Rong et al., ICML 2022).

For each fraction f of pixels, the most salient f are removed with ROAD's noisy linear imputation (pytorch-grad-cam's
``RemoveMostRelevantFirst`` + ``NoisyLinearImputer``: it fills removed pixels from their neighbours, so the score
drop reflects lost evidence rather than an out-of-distribution hole) and the target score is recorded. A faithful
map makes the score fall faster than random maps of the same coarseness (random values on the CAM's grid, upsampled):
its area under the curve is lower. We report both AUCs and their gap (random - Grad-CAM; > 0 is good).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from breastclip import RESEARCH_ONLY

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


@dataclass
class DeletionCurves:
    fractions: np.ndarray  # (F,) fraction of pixels removed, starting with 0
    cam_scores: np.ndarray  # (N, F) target score as the most salient pixels go
    random_scores: np.ndarray  # (N, F) the same for random maps (mean over draws)
    score_kind: str
    labels: list[str]  # target label per image

    @property
    def cam_auc(self) -> np.ndarray:
        return _auc(self.fractions, self.cam_scores)

    @property
    def random_auc(self) -> np.ndarray:
        return _auc(self.fractions, self.random_scores)

    @property
    def gap(self) -> np.ndarray:
        """Random AUC minus Grad-CAM AUC per image: positive when the map points at the evidence."""
        return self.random_auc - self.cam_auc

    def summary(self) -> dict[str, float]:
        return {"deletion_auc_gradcam": float(self.cam_auc.mean()), "deletion_auc_random": float(self.random_auc.mean()),
                "faithfulness_gap": float(self.gap.mean()), "images": len(self.cam_scores)}


def _auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid area over the fraction axis, normalised by its span."""
    widths = np.diff(x)
    return ((y[:, 1:] + y[:, :-1]) / 2 * widths).sum(axis=1) / (x[-1] - x[0])


def random_maps(n: int, size: int, grid: int, seed: int) -> np.ndarray:
    """(n, size, size) smooth random maps: uniform noise on a grid x grid lattice, bilinearly upsampled."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 1, grid, grid), generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def deletion_curves(cam_model, images: torch.Tensor, cams: np.ndarray, targets: np.ndarray, *,
                    fractions: tuple[float, ...] = DEFAULT_FRACTIONS, n_random: int = 2, grid: int = 7,
                    seed: int = 0) -> DeletionCurves:
    """ROAD most-relevant-first curves for ``cams`` and for ``n_random`` random maps per image."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    kind = cam_model.score_kind
    target_cls = ClassifierOutputSoftmaxTarget if kind == "probability" else ClassifierOutputTarget
    tgt = [target_cls(int(t)) for t in targets]
    model = cam_model.model
    with torch.no_grad():
        x = cam_model.normalize(images.to(cam_model.device)).float()
        base = np.array([t(o).cpu().numpy() for t, o in zip(tgt, model(x), strict=True)], dtype=np.float32)
    size = x.shape[-1]
    rand = [random_maps(len(x), size, grid, seed + r) for r in range(n_random)]
    cam_cols, rand_cols = [base], [base]
    for f in fractions:
        # keep pixels below the (1 - f) quantile: the top f are removed and imputed
        metric = PerturbationConfidenceMetric(RemoveMostRelevantFirst(100 * (1 - f), NoisyLinearImputer()))
        with torch.no_grad():
            cam_cols.append(metric(x, cams, tgt, model, return_diff=False))
            rand_cols.append(np.mean([metric(x, r, tgt, model, return_diff=False) for r in rand], axis=0))
    labels = [cam_model.labels[int(t)] for t in targets]
    return DeletionCurves(np.array((0.0, *fractions)), np.stack(cam_cols, axis=1), np.stack(rand_cols, axis=1),
                          kind, labels)


def plot_deletion(curves: DeletionCurves, path: str | Path, title: str = "Grad-CAM faithfulness (ROAD deletion)",
                  dpi: int = 150) -> Path:
    """Mean curve (with per-image lines faint) for Grad-CAM vs random maps; AUCs in the legend; research-only note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = curves.summary()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    x = curves.fractions * 100
    for row in curves.cam_scores:
        ax.plot(x, row, color="tab:red", alpha=0.15, lw=0.8)
    ax.plot(x, curves.cam_scores.mean(0), color="tab:red", lw=2,
            label=f"Grad-CAM order (AUC {s['deletion_auc_gradcam']:.3f})")
    ax.plot(x, curves.random_scores.mean(0), color="tab:gray", lw=2, ls="--",
            label=f"random maps (AUC {s['deletion_auc_random']:.3f})")
    ax.set_xlabel("most salient pixels removed (%), ROAD imputation")
    ax.set_ylabel(f"target {curves.score_kind}")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.text(0.5, 0.005, f"n = {s['images']} images; lower curve = more faithful map. {RESEARCH_ONLY}",
             ha="center", va="bottom", fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
