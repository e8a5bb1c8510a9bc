"""The user's cache: ONE root folder, ONE environment variable, and every cached thing's folder under it.

``$BREASTCLIP_CACHE`` names the root; without it the root is ``$XDG_CACHE_HOME/breastclip`` (``~/.cache/breastclip``).
An experiment's ``embed.cache_dir`` and ``breastclip embed --cache-dir`` name a root too, the same kind of folder,
so ``embed`` and ``run`` given the same root share one embedding cache::

    <root>/embeddings/<backbone>-<key>/      embedding shards (backbones/cache.py)
    <root>/pixels/<spec>/                    decoded, resized pixels (backbones/cache.py)
    <root>/fingerprints.json                 weight-file hashes (backbones/hashing.py)
    <root>/leak_fingerprints.json            image fingerprints of the leak audit (data/leaks.py)
    <root>/datasets/<name>/                  `breastclip download` (data/download.py)
    <root>/medmnist/<npz>-<md5>/             PNG exports of MedMNIST .npz files (data/sources/medmnist.py)
    <root>/synthetic/, synthetic-demo/       the generated sample sets (run --synthetic, demo)
    <root>/cv_folds/<key>.npz                cross-validation fold results of `evaluation.selection = "cv"`
                                             (heads/model_selection.py; the key covers head, hyperparameters,
                                             X, y and the folds)
    <root>/cv_folds/refit-<key>/             the chosen point refitted on train+val (a saved head)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "cache_root", "embeddings_dir", "pixels_dir", "weights_fingerprints_file",
           "leak_fingerprints_file", "datasets_dir", "medmnist_dir", "synthetic_dir", "cv_folds_dir"]

ENV_VAR = "BREASTCLIP_CACHE"


def cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` when given (a config's ``embed.cache_dir``, a ``--cache-dir``), else ``$BREASTCLIP_CACHE``, else
    ``$XDG_CACHE_HOME/breastclip`` or ``~/.cache/breastclip``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "breastclip"


def embeddings_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "embeddings"


def pixels_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "pixels"


def weights_fingerprints_file(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "fingerprints.json"


def leak_fingerprints_file(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "leak_fingerprints.json"


def datasets_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "datasets"


def medmnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "medmnist"


def synthetic_dir(name: str = "synthetic", root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / name


def cv_folds_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(root) / "cv_folds"
