from __future__ import annotations

import numpy as np

from breastclip.heads import prompt_robustness
from breastclip.prompts import bank_from_dict


def test_prompt_robustness_spread(synthetic):
    """A bank whose 'good' prompts embed at the true class directions and 'bad' prompts at random ones."""
    s = synthetic
    rng = np.random.default_rng(3)
    lookup = {}
    classes = ["benign", "malignant", "normal"]
    for k, c in enumerate(classes):
        lookup[f"good {c}"] = s["text"][k]
        lookup[f"bad {c}"] = rng.normal(size=s["text"].shape[1])
    bank = bank_from_dict({"classes": classes, "templates": ["{}"],
                           "prompts": {c: [f"good {c}", f"bad {c}"] for c in classes}})

    def encode(texts):
        out = np.stack([lookup[t] for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    table, summary = prompt_robustness(encode, bank, s["X_test"], s["y_test"])
    assert list(table["kind"]) == ["template", "prompt", "prompt", "ensemble"]
    good = table[table["variant"] == "prompt 0"].iloc[0]
    bad = table[table["variant"] == "prompt 1"].iloc[0]
    assert good["accuracy"] >= 0.95 and good["auc"] >= 0.99
    assert bad["accuracy"] < good["accuracy"]
    assert summary["accuracy_max"] == good["accuracy"] and summary["accuracy_min"] <= bad["accuracy"]
    assert summary["accuracy_std"] > 0 and summary["n_variants"] == 3
