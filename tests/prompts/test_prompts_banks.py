"""Shipped prompt banks, user banks (TOML / JSON), validation errors, class text embeddings."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from breastclip.prompts import PromptBankError, class_text_embeddings, list_banks, load_bank

SHIPPED = {
    "busi": ["benign", "malignant", "normal"],
    "breastmnist": ["malignant", "normal_or_benign"],
    "cbis_ddsm": ["benign", "malignant"],
    "breakhis_binary": ["benign", "malignant"],
    "breakhis_subtypes": ["adenosis", "fibroadenoma", "phyllodes_tumor", "tubular_adenoma", "ductal_carcinoma",
                          "lobular_carcinoma", "mucinous_carcinoma", "papillary_carcinoma"],
    "dbt": ["normal", "actionable", "benign", "cancer"],
    "medical_vs_nonmedical": ["medical", "non_medical"],
    "mammography": ["normal", "benign", "malignant"],
    "birads_density": ["A", "B", "C", "D"],
}


def hash_encoder(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in text tower: 8-d vectors from a hash of the text (normalised)."""
    out = np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts], float)
    out -= 127.5
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_bank(name):
    bank = load_bank(name)
    assert list(bank.classes) == SHIPPED[name]
    assert len(bank.templates) >= 3
    for c in bank.classes:
        assert len(bank.prompts[c]) >= 3, f"{name}/{c}: several descriptive prompts per class"
        texts = bank.texts(c)
        assert len(texts) == len(bank.templates) * len(bank.prompts[c])
        assert all("{" not in t for t in texts)


def test_list_banks_is_the_shipped_set():
    assert set(list_banks()) == set(SHIPPED)


def test_unknown_bank_names_the_choices():
    with pytest.raises(PromptBankError, match="unknown prompt bank 'nope'.*busi"):
        load_bank("nope")


def test_user_bank_toml_and_json(tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text('classes = ["a", "b"]\ntemplates = ["x {} y"]\n[prompts]\na = ["p1", "p2"]\nb = ["q"]\n')
    bank = load_bank(toml)
    assert bank.name == "mine" and bank.texts("a") == ["x p1 y", "x p2 y"]
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"name": "j", "prompts": {"a": ["p"], "b": ["q"]}}))
    bank = load_bank(str(js))
    assert bank.classes == ("a", "b") and bank.templates == ("{}",)


@pytest.mark.parametrize(("content", "message"), [
    ('[prompts]\na = ["p"]\n', "at least 2 classes"),
    ('templates = ["no slot"]\n[prompts]\na = ["p"]\nb = ["q"]\n', "exactly one"),
    ('classes = ["a", "b"]\n[prompts]\na = ["p"]\nb = []\n', "class 'b' needs a non-empty list"),
    ('classes = ["a", "b"]\n[prompts]\na = ["p"]\nb = ["q"]\nc = ["r"]\n', "missing from 'classes'"),
    ('classes = ["a", "b"\n', "cannot parse"),
])
def test_bad_user_bank_names_file_and_problem(tmp_path, content, message):
    f = tmp_path / "bad.toml"
    f.write_text(content)
    with pytest.raises(PromptBankError, match=message) as info:
        load_bank(f)
    assert str(f) in str(info.value)


def test_missing_bank_file(tmp_path):
    with pytest.raises(PromptBankError, match="does not exist"):
        load_bank(tmp_path / "gone.toml")


def test_aligned_to_dataset_labels():
    bank = load_bank("cbis_ddsm").aligned_to(["MALIGNANT", "BENIGN"])
    assert bank.classes == ("MALIGNANT", "BENIGN")
    assert bank.prompts["BENIGN"] == load_bank("cbis_ddsm").prompts["benign"]
    sub = load_bank("breakhis_subtypes").aligned_to(["DC", "Phyllodes Tumor"])
    assert sub.prompts["Phyllodes Tumor"] == load_bank("breakhis_subtypes").prompts["phyllodes_tumor"]
    with pytest.raises(PromptBankError, match=r"no class for labels \['tumour'\]"):
        load_bank("busi").aligned_to(["benign", "tumour"])


def test_class_text_embeddings_average_normalised_prompts():
    bank = load_bank("busi")
    T = class_text_embeddings(hash_encoder, bank)
    assert T.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0)
    expected = hash_encoder(bank.texts("malignant")).mean(axis=0)
    np.testing.assert_allclose(T[1], expected / np.linalg.norm(expected))

    class FakeBackbone:
        def encode_text(self, texts):
            return hash_encoder(texts)

    np.testing.assert_allclose(class_text_embeddings(FakeBackbone(), bank, batch_size=3), T)


def test_mammography_banks_align_to_real_label_spellings():
    """The NYU / CBIS-DDSM labels and the Mayo / CBIS-DDSM density codes map onto the shipped banks."""
    mammo = load_bank("mammography").aligned_to(["MALIGNANT", "BENIGN_WITHOUT_CALLBACK", "normal"])
    assert list(mammo.classes) == ["MALIGNANT", "BENIGN_WITHOUT_CALLBACK", "normal"]
    assert load_bank("birads_density").aligned_to(["1", "2", "3", "4"]).classes == ("1", "2", "3", "4")
    assert load_bank("birads_density").aligned_to(["A", "B", "C", "D"]).classes == ("A", "B", "C", "D")
