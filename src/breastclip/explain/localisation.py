"""Does the map point at the lesion? Pointing game and energy-based pointing game against lesion masks.

- ``pointing_hit``: the map's maximum falls inside the mask (Zhang et al., 2018);
- ``energy_in_mask``: the share of the map's mass inside the mask (Wang et al., Score-CAM 2020);
- ``mask_fraction``: the mask's share of the image, i.e. the energy a uniform map would score (chance level).
"""

from __future__ import annotations

import numpy as np


def mask_to_bool(prepared_mask: np.ndarray) -> np.ndarray:
    """A mask image prepared like its image, (3, S, S) or (S, S) uint8 -> (S, S) bool (any channel > 127)."""
    m = np.asarray(prepared_mask)
    if m.ndim == 3:
        m = m.max(axis=0)
    return m > 127


def localisation_scores(cam: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Pointing-game hit, energy inside the mask, and the mask's area fraction (chance energy)."""
    mask = mask.astype(bool)
    if mask.shape != cam.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the map's {cam.shape}")
    total = float(cam.sum())
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return {"pointing_hit": float(mask[peak]) if total > 0 else float("nan"),
            "energy_in_mask": float(cam[mask].sum() / total) if total > 0 else float("nan"),
            "mask_fraction": float(mask.mean())}
