import numpy as np
import pandas as pd
import pytest

from breastclip.predictions import classes_of, make_predictions, proba_of, validate_predictions, y_true_index


def test_round_trip_columns_and_argmax():
    proba = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    pred = make_predictions(ids=["a", "b", "c"], y_true=["malignant", "benign", "benign"], proba=proba,
                            classes=["benign", "malignant"], method="zeroshot", split="test")
    validate_predictions(pred)
    assert classes_of(pred) == ["benign", "malignant"]
    np.testing.assert_allclose(proba_of(pred), proba)
    assert list(y_true_index(pred)) == [1, 0, 0]
    assert list(pred["y_pred"]) == ["malignant", "benign", "benign"]
    assert list(pred["patient_id"]) == ["a", "b", "c"]


def test_shape_mismatch_and_bad_sums_are_refused():
    with pytest.raises(ValueError, match="expected"):
        make_predictions(ids=["a"], y_true=["x"], proba=np.ones((1, 3)), classes=["x", "y"], method="m", split="test")
    bad = pd.DataFrame({"id": ["a"], "patient_id": ["a"], "split": ["test"], "method": ["m"], "y_true": ["x"],
                        "y_pred": ["x"], "p_x": [0.7], "p_y": [0.7]})
    with pytest.raises(ValueError, match="sum to 1"):
        validate_predictions(bad)
