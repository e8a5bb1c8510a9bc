"""Save and load heads without pickle: ``head.json`` (hyperparameters, classes, fitted scalars) beside
``weights.safetensors`` (every array: fitted weights and array-valued hyperparameters such as text embeddings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

FORMAT = "breastclip-head/1"
CONFIG_FILE = "head.json"
WEIGHTS_FILE = "weights.safetensors"
_PARAM_PREFIX = "param."
_STATE_PREFIX = "state."


class HeadFormatError(ValueError):
    """A saved head folder that cannot be read."""


def _to_json(value: Any) -> Any:
    """Encode hyperparameter values so that they decode to the same Python types."""
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a hyperparameter of type {type(value).__name__}: {value!r}")


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {_from_json(k): _from_json(v) for k, v in value["__dict__"]}
        raise HeadFormatError(f"unexpected object in {CONFIG_FILE}: {value!r}")
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    kind = classes.dtype.kind
    if kind in "iub":
        return {"kind": "int" if kind != "b" else "bool", "values": [v.item() for v in classes]}
    if kind == "f":
        return {"kind": "float", "values": [float(v) for v in classes]}
    return {"kind": "str", "values": [str(v) for v in classes]}


def _classes_from_json(spec: dict[str, Any]) -> np.ndarray:
    dtype = {"int": np.int64, "bool": bool, "float": np.float64, "str": str}[spec["kind"]]
    return np.asarray(spec["values"], dtype=dtype)


def save_head(head, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a fitted head to the folder ``path``; refuses to replace an existing head unless ``overwrite``."""
    from breastclip import RESEARCH_ONLY, __version__
    from breastclip.heads import registry_name

    if not hasattr(head, "n_features_in_"):
        raise ValueError(f"{type(head).__name__} is not fitted: call fit before save")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; a head is saved as a folder")
    if (path / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(f"{path} already holds a saved head; pass overwrite=True to replace it")
    arrays: dict[str, np.ndarray] = {}
    params_json: dict[str, Any] = {}
    for name, value in head.get_params(deep=False).items():
        if isinstance(value, np.ndarray):
            arrays[_PARAM_PREFIX + name] = value
        else:
            params_json[name] = _to_json(value)
    fitted_arrays, state = head._export_state()
    arrays.update({_STATE_PREFIX + k: v for k, v in fitted_arrays.items()})
    config = {
        "format": FORMAT,
        "head": registry_name(type(head)),
        "breastclip_version": __version__,
        "notice": RESEARCH_ONLY,
        "params": params_json,
        "classes": _classes_to_json(np.asarray(head.classes_)) if hasattr(head, "classes_") else None,
        "n_features_in": int(head.n_features_in_),
        "state": _to_json(state),
    }
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_head(path: str | Path):
    """Rebuild a head saved by :func:`save_head`; ``predict_proba`` matches the saved head exactly."""
    from breastclip.heads import SAVEABLE

    path = Path(path)
    cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not cfg_file.is_file() or not w_file.is_file():
        raise HeadFormatError(f"{path} is not a saved head: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise HeadFormatError(f"{cfg_file}: invalid JSON ({exc})") from exc
    if config.get("format") != FORMAT:
        raise HeadFormatError(f"{cfg_file}: unknown format {config.get('format')!r}, expected {FORMAT!r}")
    name = config.get("head")
    if name not in SAVEABLE:
        raise HeadFormatError(f"{cfg_file}: unknown head {name!r}; known heads: {sorted(SAVEABLE)}")
    try:
        arrays = load_file(str(w_file))
    except Exception as exc:  # safetensors raises its own SafetensorError (header too large, truncated, ...)
        raise HeadFormatError(f"{w_file}: not a valid safetensors file ({exc}); restore it from the results "
                              f"folder's copy or run `breastclip run` on the config again to rewrite it") from exc
    params = {k: _from_json(v) for k, v in config["params"].items()}
    params.update({k[len(_PARAM_PREFIX):]: v for k, v in arrays.items() if k.startswith(_PARAM_PREFIX)})
    head = SAVEABLE[name](**params)
    if config.get("classes") is not None:
        head.classes_ = _classes_from_json(config["classes"])
    head.n_features_in_ = int(config["n_features_in"])
    state_arrays = {k[len(_STATE_PREFIX):]: v for k, v in arrays.items() if k.startswith(_STATE_PREFIX)}
    head._import_state(state_arrays, _from_json(config["state"]))
    return head
