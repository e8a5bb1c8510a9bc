"""Explain a set of image files: overlay PNGs, a table of what each map explains, and the faithfulness figure."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from breastclip import RESEARCH_ONLY
from breastclip.data.images import IMAGE_SUFFIXES
from breastclip.data.sources._files import image_files
from breastclip.explain.faithfulness import DeletionCurves, deletion_curves, plot_deletion
from breastclip.explain.gradcam import CamModel, GradCAMExplainer
from breastclip.explain.localisation import localisation_scores, mask_to_bool


def overlay(image: np.ndarray, cam: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """(S, S, 3) uint8 image + (S, S) map in [0, 1] -> (S, S, 3) uint8 jet overlay (pytorch-grad-cam)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255.0, cam.astype(np.float32), use_rgb=True,
                             image_weight=image_weight)


def save_png(rgb: np.ndarray, path: Path, text: dict[str, str]) -> Path:
    """PNG with the explanation's provenance (and the research-only notice) in its text chunks."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in {**text, "Disclaimer": RESEARCH_ONLY}.items():
        info.add_text(k, str(v))
    Image.fromarray(rgb).save(path, pnginfo=info)
    return path


@dataclass
class ExplainResult:
    table: pd.DataFrame  # image, target, score, overlay, (deletion AUCs)
    out_dir: Path
    curves: DeletionCurves | None = None
    figure: Path | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)


def collect_images(source: str | Path) -> list[Path]:
    """One image file, or every image file under a folder (sorted)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = image_files(source)
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {source}")
        return files
    raise FileNotFoundError(f"{source} is neither an image file nor a folder")


def _stem(path: Path, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("_")[:80] or "image"
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}_{i}"
    used.add(name)
    return name


def explain_images(paths: Sequence[str | Path], cam_model: CamModel, out_dir: str | Path, *,
                   target: int | str | None = None, method: str = "gradcam", batch_size: int = 8,
                   faithfulness: bool = True, faithfulness_max_images: int = 16,
                   fractions: tuple[float, ...] | None = None, masks: Sequence[str | Path | None] | None = None,
                   overwrite: bool = False) -> ExplainResult:
    """Grad-CAM overlays for ``paths`` into ``out_dir`` (``<name>_gradcam.png``), ``explanations.csv``, and the
    ROAD deletion figure ``faithfulness.png`` (on the first ``faithfulness_max_images`` images). Undecodable files
    are listed in ``failures`` and skipped. ``masks`` (lesion masks aligned with ``paths``, None where absent)
    adds pointing-game and energy-in-lesion columns."""
    from breastclip.data.images import load_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "explanations.csv").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds explanations.csv; choose another folder or overwrite=True")
    files = [Path(p) for p in paths]
    if masks is not None and len(masks) != len(paths):
        raise ValueError(f"{len(masks)} masks for {len(paths)} images: give one (or None) per image")
    prepared: list[torch.Tensor] = []
    sources: list[Path] = []
    prepared_masks: list[np.ndarray | None] = []
    failures: list[tuple[str, str]] = []
    for i, p in enumerate(files):
        try:
            image = cam_model.prepare(load_image(p))
            mask_path = masks[i] if masks is not None else None
            mask = mask_to_bool(cam_model.prepare(load_image(mask_path)).numpy()) if mask_path else None
        except (ValueError, OSError) as exc:
            failures.append((str(p), str(exc)))
            continue
        prepared.append(image)
        sources.append(p)
        prepared_masks.append(mask)
    rows: list[dict] = []
    used: set[str] = set()
    all_cams, all_targets, all_images = [], [], []
    with GradCAMExplainer(cam_model, method=method) as cam:
        for i in range(0, len(prepared), batch_size):
            batch = torch.stack(prepared[i:i + batch_size])
            res = cam(batch, target=target)
            for j in range(len(batch)):
                src = sources[i + j]
                t = int(res.targets[j])
                img = batch[j].permute(1, 2, 0).numpy()
                name = f"{_stem(src, used)}_{method.replace('+', 'p')}.png"
                save_png(overlay(img, res.cams[j]), out_dir / name,
                         {"Source": src.name, "Model": cam_model.description, "Target": cam_model.labels[t],
                          "Method": method})
                row = {"image": str(src), "target": cam_model.labels[t], "target_index": t,
                       cam_model.score_kind: float(res.scores[j, t]),
                       "top_output": cam_model.labels[int(res.scores[j].argmax())], "overlay": name,
                       "map_std": float(res.cams[j].std())}
                lesion = prepared_masks[i + j]
                if lesion is not None:
                    row.update(localisation_scores(res.cams[j], lesion))
                rows.append(row)
            all_cams.append(res.cams)
            all_targets.append(res.targets)
            all_images.append(batch)
    table = pd.DataFrame(rows)
    curves = figure = None
    if faithfulness and rows:
        k = min(faithfulness_max_images, len(rows))
        images = torch.cat(all_images)[:k]
        cams, targets = np.concatenate(all_cams)[:k], np.concatenate(all_targets)[:k]
        curves = (deletion_curves(cam_model, images, cams, targets, fractions=fractions) if fractions
                  else deletion_curves(cam_model, images, cams, targets))
        table["deletion_auc_gradcam"] = np.nan
        table["deletion_auc_random"] = np.nan
        table.loc[: k - 1, "deletion_auc_gradcam"] = curves.cam_auc
        table.loc[: k - 1, "deletion_auc_random"] = curves.random_auc
        figure = plot_deletion(curves, out_dir / "faithfulness.png",
                               title=f"Grad-CAM faithfulness (ROAD deletion): {cam_model.description}")
        loc = {c: float(table[c].mean()) for c in ("pointing_hit", "energy_in_mask", "mask_fraction")
               if c in table}
        (out_dir / "faithfulness.json").write_text(json.dumps(
            {**curves.summary(), **loc, "fractions": curves.fractions.tolist(), "method": method,
             "model": cam_model.description, "research_only": RESEARCH_ONLY}, indent=2))
    table.to_csv(out_dir / "explanations.csv", index=False)
    if failures:
        pd.DataFrame(failures, columns=["path", "error"]).to_csv(out_dir / "failures.csv", index=False)
    return ExplainResult(table, out_dir, curves, figure, failures)
