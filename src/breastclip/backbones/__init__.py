"""Frozen image/text backbones: a registry of named entries, one factory, batched cached extraction.

``create_backbone(name)`` -> :class:`Backbone` (``encode_images`` uint8 -> unit vectors, ``encode_text``);
``embed_manifest(manifest, name)`` -> :class:`EmbeddingResult` (X aligned with ids, failures), cached on disk.
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
    "create_backbone",
    "embed_manifest",
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
    raise AttributeError(name)
