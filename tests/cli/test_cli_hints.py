"""Error hints point to fixes that exist for the command at hand."""

from __future__ import annotations

import pytest

from breastclip.backbones import get_entry
from breastclip.backbones.hub import unavailable_message
from breastclip.demo import choose_data


def test_unavailable_backbone_hint_names_what_run_accepts():
    msg = unavailable_message(get_entry("clip-vit-b32"), "open_clip.create_model(...)", "no route to host")
    assert "--offline" in msg and "backbones = [" in msg  # what `breastclip run` has
    assert "breastclip embed --backbone local:" in msg  # --backbone named only with the command that has it
    assert "(CLI: --backbone" not in msg


def test_unavailable_local_checkpoint_does_not_suggest_the_internet(tmp_path):
    from breastclip.backbones.registry import BackboneEntry

    entry = BackboneEntry(name=f"local:{tmp_path / 'w.pt'}", family="open_clip", architecture="ViT-B-32",
                          weights=str(tmp_path / "w.pt"), image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3,
                          interpolation="bicubic", embed_dim=512, licence="local", description="")
    msg = unavailable_message(entry, "open_clip.create_model(...)", "bad file")
    assert "internet" not in msg and str(tmp_path / "w.pt") in msg


def test_demo_data_finds_breastmnist_in_subfolders(tmp_path, monkeypatch):
    nested = tmp_path / "downloads" / "medmnist" / "breastmnist.npz"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"npz")
    kind, path, why = choose_data(tmp_path / "downloads", offline=True)
    assert kind == "breastmnist" and path == nested and "--data" in why


def test_demo_data_never_falls_back_to_another_folder(tmp_path, monkeypatch):
    root = tmp_path / "medmnist_root"
    root.mkdir()
    (root / "breastmnist.npz").write_bytes(b"npz")
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no breastmnist.npz in it or its subfolders"):
        choose_data(tmp_path / "empty", offline=True)
