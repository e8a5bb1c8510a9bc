"""Frozen image/text backbones: a registry of named entries, one factory, batched cached extraction.

``create_backbone(name)`` -> :class:`Backbone` (``encode_images`` uint8 -> unit vectors, ``encode_text``);
``embed_manifest(manifest, name)`` -> :class:`EmbeddingResult` (X aligned with ids, failures), cached on disk;
``embed_tiles(manifest, name, TileSpec(...))`` the high-resolution tile view, pooled per image.
"""

from .base import Backbone
from .factory import create_backbone, offline_status
from .registry import (
    DEFAULT_BACKBONE,
    BackboneEntry,
    BackboneUnavailable,
    get_entry,
    list_backbones,
    register_backbone,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneEntry",
    "BackboneUnavailable",
    "EmbeddingResult",
    "TileEmbeddingResult",
    "TileSpec",
    "create_backbone",
    "embed_manifest",
    "embed_tiles",
    "get_entry",
    "list_backbones",
    "offline_status",
    "register_backbone",
]


def __getattr__(name: str):
    # encode pulls in the DataLoader machinery: import it only when asked for
    if name in ("embed_manifest", "EmbeddingResult"):
        from . import encode

        return getattr(encode, name)
    if name in ("embed_tiles", "TileEmbeddingResult"):
        from . import tile_embed

        return getattr(tile_embed, name)
    if name == "TileSpec":
        from .tiles import TileSpec

        return TileSpec
    raise AttributeError(name)
