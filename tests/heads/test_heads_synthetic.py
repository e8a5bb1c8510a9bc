"""Every head on synthetic embeddings with a known answer; reproducibility; history; save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from breastclip.heads import (
    HEADS,
    EmbeddingOOD,
    HeadFormatError,
    LinearProbe,
    MedicalGate,
    SimilarityGuidedHead,
    TipAdapter,
    UnalignedTextError,
    ZeroShotHead,
    load_head,
)

FAST = {
    "zeroshot": {},
    "linear_probe": {"refine": 2},
    "similarity_guided": {"epochs": 25},
    "mlp": {"epochs": 15},
    "fc": {"epochs": 15},
    "tip_adapter": {"shots": 16},
    "tip_adapter_f": {"shots": 16, "epochs": 10},
    "svm_rbf": {},
    "knn": {},
    "simpleshot": {},
    "ensemble": {"members": (("svm_rbf", {"C": 3.0}), ("knn", {"k": 7}), ("simpleshot", {}))},
    "attention_mil": {"epochs": 15},
}


def build(name, text, **extra):
    cls = HEADS[name]
    kwargs = dict(FAST[name])
    if name == "zeroshot":
        return cls(text_embeddings=text, **kwargs)
    if name in {"similarity_guided", "tip_adapter", "tip_adapter_f"}:
        kwargs["text_embeddings"] = text
    if "random_state" in cls().get_params():
        kwargs["random_state"] = 0
    return cls(**kwargs, **extra)


@pytest.fixture(scope="module")
def fitted(synthetic):
    s = synthetic
    return {name: build(name, s["text"]).fit(s["X"], s["y"], s["X_val"], s["y_val"]) for name in HEADS}


def test_registry_lists_every_method():
    assert set(HEADS) == {"zeroshot", "linear_probe", "similarity_guided", "mlp", "fc", "tip_adapter", "tip_adapter_f",
                          "svm_rbf", "knn", "simpleshot", "ensemble", "attention_mil"}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_learns_the_known_answer(fitted, synthetic, name):
    head = fitted[name]
    s = synthetic
    proba = head.predict_proba(s["X_test"])
    assert proba.shape == (len(s["X_test"]), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert head.classes_.tolist() == ["benign", "malignant", "normal"]
    assert head.n_features_in_ == s["X"].shape[1]
    acc = np.mean(head.predict(s["X_test"]) == s["y_test"])
    assert acc >= 0.9, f"{name}: accuracy {acc:.3f} on a separable synthetic problem"


@pytest.mark.parametrize("name", sorted(HEADS))
def test_save_load_gives_identical_probabilities(fitted, synthetic, name, tmp_path):
    head = fitted[name]
    path = head.save(tmp_path / name)
    assert (path / "head.json").is_file() and (path / "weights.safetensors").is_file()
    assert not list(path.glob("*.pkl"))
    loaded = load_head(path)
    assert type(loaded) is type(head)
    assert loaded.get_params().keys() == head.get_params().keys()
    np.testing.assert_array_equal(loaded.predict_proba(synthetic["X_test"]), head.predict_proba(synthetic["X_test"]))
    np.testing.assert_array_equal(loaded.classes_, head.classes_)
    assert getattr(loaded, "history_", None) == getattr(head, "history_", None)


def test_save_refuses_to_overwrite(fitted, tmp_path):
    fitted["fc"].save(tmp_path / "h")
    with pytest.raises(FileExistsError, match="already holds a saved head"):
        fitted["fc"].save(tmp_path / "h")
    fitted["fc"].save(tmp_path / "h", overwrite=True)


def test_load_rejects_a_folder_that_is_not_a_head(tmp_path):
    with pytest.raises(HeadFormatError, match="not a saved head"):
        load_head(tmp_path)
    (tmp_path / "head.json").write_text("{not json")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(HeadFormatError, match="invalid JSON"):
        load_head(tmp_path)


@pytest.mark.parametrize("name", ["mlp", "fc", "similarity_guided", "tip_adapter_f"])
def test_training_heads_report_history_and_best_epoch(fitted, name):
    head = fitted[name]
    hist = head.history_
    assert [h["epoch"] for h in hist] == list(range(1, len(hist) + 1))
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in hist)
    best = min(hist, key=lambda h: h["val_loss"])
    assert head.best_epoch_ == best["epoch"]


@pytest.mark.parametrize("name", ["mlp", "fc", "similarity_guided", "tip_adapter_f", "linear_probe"])
def test_same_seed_same_model(synthetic, name):
    s = synthetic
    a = build(name, s["text"]).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    b = clone(a).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    np.testing.assert_array_equal(a.predict_proba(s["X_test"]), b.predict_proba(s["X_test"]))


def test_integer_labels_and_unknown_validation_label(synthetic):
    s = synthetic
    y_int = np.unique(s["y"], return_inverse=True)[1]
    head = LinearProbe(refine=0, random_state=0).fit(s["X"], y_int)
    assert head.classes_.tolist() == [0, 1, 2]
    assert head.predict(s["X_test"]).dtype.kind == "i"
    with pytest.raises(ValueError, match=r"y_val holds labels \['tumour'\] not seen in training"):
        LinearProbe().fit(s["X"], s["y"], s["X_val"][:2], ["benign", "tumour"])


def test_linear_probe_picks_c_on_validation(synthetic):
    s = synthetic
    head = LinearProbe(random_state=0).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    scores = {r["C"]: r["score"] for r in head.cv_results_}
    assert head.C_ in scores and scores[head.C_] == max(scores.values())
    assert len(scores) > 13  # decade sweep plus refinement
    weighted = LinearProbe(refine=0, class_weight="balanced", standardize=True).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    assert weighted.predict_proba(s["X_test"]).shape == (len(s["X_test"]), 3)


def test_zero_shot_uses_text_order_and_refuses_unaligned(synthetic):
    s = synthetic
    # class names given explicitly, in a different order from the sorted labels
    head = ZeroShotHead(s["text"][[2, 0, 1]], classes=["normal", "benign", "malignant"]).fit(s["X_test"])
    assert np.mean(head.predict(s["X_test"]) == s["y_test"]) >= 0.95
    with pytest.raises(UnalignedTextError, match="unaligned"):
        ZeroShotHead(s["text"], text_aligned=False).fit(s["X"], s["y"])
    with pytest.raises(ValueError, match="different backbones"):
        ZeroShotHead(s["text"][:, :10]).fit(s["X"], s["y"])


def test_similarity_guided_learns_a_projection_for_unaligned_text(synthetic):
    """efficientnet-lite + MiniLM style: text in another space (here 16-d random vectors): projection learned."""
    s = synthetic
    text = np.random.default_rng(1).normal(size=(3, 16))
    head = SimilarityGuidedHead(text, text_aligned=False, epochs=40, random_state=0)
    head.fit(s["X"], s["y"], s["X_val"], s["y_val"])
    assert not head.guidance_active_
    assert np.mean(head.predict(s["X_test"]) == s["y_test"]) >= 0.9
    with pytest.raises(ValueError, match="text_aligned=False"):
        SimilarityGuidedHead(text, text_aligned=True).fit(s["X"], s["y"])


def test_guidance_pulls_toward_zero_shot(synthetic):
    """A large guidance weight keeps the head's distribution near the zero-shot one."""
    s = synthetic
    zs = ZeroShotHead(s["text"]).fit(s["X"], s["y"]).predict_proba(s["X_test"])
    kl = {}
    for w in (0.0, 20.0):
        p = SimilarityGuidedHead(s["text"], guidance_weight=w, epochs=15, random_state=0).fit(
            s["X"], s["y"]).predict_proba(s["X_test"])
        kl[w] = float(np.mean(np.sum(zs * (np.log(zs + 1e-12) - np.log(p + 1e-12)), axis=1)))
    assert kl[20.0] < kl[0.0]


def test_tip_adapter_cache_uses_k_shots_and_works_without_text(synthetic):
    s = synthetic
    head = TipAdapter(shots=4, random_state=0).fit(s["X"], s["y"], s["X_val"], s["y_val"])
    assert head.keys_.shape == (12, s["X"].shape[1]) and not head.uses_text_
    assert np.bincount(np.argmax(head.values_, axis=1)).tolist() == [4, 4, 4]
    assert np.mean(head.predict(s["X_test"]) == s["y_test"]) >= 0.85


def test_medical_gate_mechanics(synthetic):
    s = synthetic
    text = s["text"][:2]
    gate = MedicalGate(text, threshold=0.5).fit(s["X"][:1])
    res = gate.check(np.vstack([text[0], text[1]]))
    assert res.scores.shape == (2,) and res.scores[0] > 0.99 and res.scores[1] < 0.01
    assert res.is_medical.tolist() == [True, False] and res.n_rejected == 1
    strict = MedicalGate(text, threshold=1.01).fit(s["X"][:1]).check(text[:1])
    assert strict.n_rejected == 1


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_ood_flags_far_points(synthetic, method, tmp_path):
    s = synthetic
    ood = EmbeddingOOD(method=method, quantile=0.95, random_state=0).fit(s["X"], s["y"], X_val=s["X_val"])
    assert np.mean(ood.is_ood(s["X_val"])) <= 0.06  # threshold at the 95th percentile of validation scores
    far = np.random.default_rng(5).normal(size=(50, s["X"].shape[1]))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    assert np.mean(ood.is_ood(far)) >= 0.9
    assert np.mean(ood.is_ood(s["X_test"])) <= 0.2
    loaded = load_head(ood.save(tmp_path / "ood"))
    np.testing.assert_array_equal(loaded.ood_score(far), ood.ood_score(far))
    assert loaded.predict(far[:3]).tolist() == ood.predict(far[:3]).tolist()


def test_make_head_routes_text_arguments(synthetic):
    from breastclip.heads import make_head

    s = synthetic
    assert make_head("mlp", text_embeddings=s["text"], epochs=1).get_params()["epochs"] == 1
    sg = make_head("similarity_guided", text_embeddings=s["text"], text_aligned=False)
    assert sg.text_aligned is False and sg.text_embeddings is s["text"]
    zs = make_head("zeroshot", text_embeddings=s["text"], classes=["benign", "malignant", "normal"])
    assert zs.fit(s["X"]).classes_.tolist() == ["benign", "malignant", "normal"]
    with pytest.raises(KeyError, match="unknown head 'svm'"):
        make_head("svm")
