"""Embedding step of a run: each backbone embeds the manifest once, through the content-addressed cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastclip.backbones import Backbone, BackboneEntry, create_backbone, embed_manifest, get_entry
from breastclip.backbones.preprocess import pixel_options
from breastclip.config import ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.user_cache import cache_root

log = logging.getLogger("breastclip.run")


@dataclass
class EmbeddingSet:
    """One backbone's embeddings of the manifest: ``X`` rows aligned with ``ids``."""

    backbone_name: str
    X: np.ndarray
    ids: list[str]
    failures: list[tuple[str, str, str]]  # (id, path, problem)
    entry: BackboneEntry
    device: str | None = None
    n_computed: int = 0
    n_cached: int = 0
    seconds: float = 0.0
    _backbone: Backbone | None = None

    def rows(self, ids: list[str]) -> np.ndarray:
        pos = {i: k for k, i in enumerate(self.ids)}
        return self.X[[pos[i] for i in ids]]

    @property
    def backbone(self) -> Backbone:
        """The live model, built on first use only (text prompts, Grad-CAM): cache hits never load weights. Built
        from :attr:`entry`, so it prepares pixels as the embeddings were made (breast crop, flip, padding)."""
        if self._backbone is None:
            self._backbone = create_backbone(self.entry, self.device or None)
        return self._backbone

    @property
    def has_text(self) -> bool:
        return self.entry.has_text

    @property
    def text_aligned(self) -> bool:
        return self.entry.has_text and self.entry.text_aligned


def cache_dir_for(cfg: ExperimentConfig) -> Path:
    """The cache root this experiment uses: ``embed.cache_dir`` or the user's (the same root ``breastclip embed``
    uses, so both share one embedding cache)."""
    return cache_root(cfg.embed.cache_dir or None)


def embed_all(cfg: ExperimentConfig, manifest: Manifest, *, progress: bool = True) -> dict[str, EmbeddingSet]:
    """Embed ``manifest`` with every backbone of the experiment (cache hits cost only hashing)."""
    out: dict[str, EmbeddingSet] = {}
    cache = cache_dir_for(cfg)
    for name in cfg.backbones:
        opts = dict(cfg.embed.options)
        entry = get_entry(name, **pixel_options(opts))
        if cfg.embed.batch_size:
            opts["batch_size"] = cfg.embed.batch_size
        if cfg.embed.device:
            opts["device"] = cfg.embed.device
        opts.setdefault("progress", progress)
        log.info("embedding %d images with %s (cache %s)", len(manifest), name, cache)
        result = embed_manifest(manifest, name, cache_dir=cache, **opts)
        if result.failures:
            log.warning("%s: %d image(s) could not be embedded and are left out: %s", name, len(result.failures),
                        "; ".join(str(f) for f in result.failures[:5]))
        s = EmbeddingSet(name, np.asarray(result.X, dtype=np.float32), [str(i) for i in result.ids],
                         list(result.failures), entry, cfg.embed.device or None, result.n_computed,
                         result.n_cached, result.seconds)
        log.info("%s: %d embedded (%d computed, %d from the cache) in %.1f s", name, len(s.ids), s.n_computed,
                 s.n_cached, s.seconds)
        out[name] = s
    return out


def common_ids(sets: dict[str, EmbeddingSet], manifest: Manifest) -> list[str]:
    """Manifest ids every backbone embedded, in manifest order (all methods are compared on the same images)."""
    keep = set(manifest.df["id"])
    for s in sets.values():
        keep &= set(s.ids)
    return [i for i in manifest.df["id"] if i in keep]


def failures_table(sets: dict[str, EmbeddingSet]) -> list[dict[str, str]]:
    return [{"backbone": name, "id": str(i), "path": str(path), "error": str(problem)}
            for name, s in sets.items() for i, path, problem in s.failures]
