"""Architecture table: builders, real packaged weights, the torchvision download path and its offline error."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from breastclip.finetune.models import (
    PretrainedWeightsUnavailable,
    build_model,
    efficientnet_lite_weights_path,
    get_arch,
    list_architectures,
    target_layer,
)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet-lite0"])
def test_random_init_models_output_one_logit_per_class(arch):
    model = build_model(arch, 3, pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3)
    assert isinstance(target_layer(model, arch), torch.nn.Module)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet9000", 2)
    assert {"resnet18", "resnet50", "efficientnet-lite0"} <= set(list_architectures())


def test_efficientnet_lite0_loads_the_real_packaged_imagenet_weights():
    state = torch.load(efficientnet_lite_weights_path(), map_location="cpu", weights_only=True)
    model = build_model("efficientnet-lite0", 2, pretrained=True)
    stem = model.state_dict()["_conv_stem.weight"]
    assert torch.equal(stem, state["_conv_stem.weight"])
    assert model._fc.out_features == 2  # new head, ImageNet body
    assert get_arch("efficientnet-lite0").mean[0] == pytest.approx(127 / 255)


def test_resnet_download_failure_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained=False") as err:
        build_model("resnet18", 2, pretrained=True)
    assert "efficientnet-lite0" in str(err.value) and "resnet18-f37072fd.pth" in str(err.value)


def test_resnet_weights_come_through_the_torch_hub_cache(tmp_path, monkeypatch):
    """The real torchvision loader, fed from the hub cache a user (or a first online run) fills."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    donor = build_model("resnet18", 1000, pretrained=False)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(donor.state_dict(), cache / "resnet18-f37072fd.pth")
    model = build_model("resnet18", 4, pretrained=True)
    assert torch.equal(model.layer4[1].conv2.weight, donor.layer4[1].conv2.weight)
    assert model.fc.out_features == 4
