"""Prompt banks: per-class descriptive prompts and templates, stored as TOML (shipped) or TOML/JSON (user) data
files, and their class text embeddings (every prompt x template encoded, normalised, averaged, renormalised).

A bank file (JSON takes the same keys)::

    name = "my_bank"
    classes = ["benign", "malignant"]            # order = column order of the predictions
    templates = ["a breast ultrasound image showing {}.", "{}, seen on ultrasound."]
    [prompts]
    benign = ["a benign lesion", "a circumscribed oval mass"]
    malignant = ["a malignant tumour", "an irregular spiculated mass"]
    [aliases]                                    # optional: other label spellings in data sets
    malignant = ["MALIGNANT", "cancer"]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

BANKS_PACKAGE = "breastclip.prompts.banks"


class PromptBankError(ValueError):
    """A prompt bank file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class PromptBank:
    """Class names (in order), several descriptive prompts per class, and templates with one ``{}`` slot."""

    name: str
    classes: tuple[str, ...]
    prompts: Mapping[str, tuple[str, ...]]
    templates: tuple[str, ...] = ("{}",)
    description: str = ""
    modality: str = ""
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""

    def texts(self, cls: str) -> list[str]:
        """Every template filled with every descriptive prompt of ``cls``."""
        return [t.format(p) for t in self.templates for p in self.prompts[cls]]

    @property
    def n_prompts(self) -> int:
        return sum(len(self.texts(c)) for c in self.classes)

    def aligned_to(self, labels: Sequence[str]) -> PromptBank:
        """The bank with classes renamed and ordered as a data set's ``labels``.

        Matching ignores case, spaces, ``-`` and ``_`` and also tries the bank's aliases; every label must match
        exactly one bank class.
        """
        lookup: dict[str, str] = {}
        for c in self.classes:
            for name in (c, *self.aliases.get(c, ())):
                lookup[_norm(name)] = c
        mapping: dict[str, str] = {}
        missing: list[str] = []
        for label in labels:
            hit = lookup.get(_norm(str(label)))
            if hit is None:
                missing.append(str(label))
            else:
                mapping[str(label)] = hit
        if missing:
            raise PromptBankError(
                f"prompt bank {self.name!r} has no class for labels {missing}; its classes are {list(self.classes)}"
                f" (aliases {dict(self.aliases)})"
            )
        dupes = sorted({c for c in mapping.values() if list(mapping.values()).count(c) > 1})
        if dupes:
            raise PromptBankError(f"labels {list(labels)} map several labels onto bank class(es) {dupes}")
        return PromptBank(
            name=self.name, classes=tuple(mapping), prompts={k: self.prompts[v] for k, v in mapping.items()},
            templates=self.templates, description=self.description, modality=self.modality,
            aliases={}, source=self.source,
        )


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def list_banks() -> list[str]:
    """Names of the shipped banks."""
    return sorted(p.name[:-5] for p in resources.files(BANKS_PACKAGE).iterdir() if p.name.endswith(".toml"))


def load_bank(name_or_path: str | Path) -> PromptBank:
    """A shipped bank by name (see :func:`list_banks`) or a user bank from a ``.toml`` / ``.json`` file."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix.lower() in {".toml", ".json"} or path.exists():
        if not path.is_file():
            raise PromptBankError(f"prompt bank file {path} does not exist")
        raw = path.read_text(encoding="utf-8")
        where = str(path)
        is_json = path.suffix.lower() == ".json"
    else:
        res = resources.files(BANKS_PACKAGE) / f"{text_name}.toml"
        if not res.is_file():
            raise PromptBankError(f"unknown prompt bank {text_name!r}; shipped banks: {list_banks()} "
                                  "(or give a path to a .toml / .json file)")
        raw = res.read_text(encoding="utf-8")
        where = f"shipped bank {text_name}"
        is_json = False
    try:
        data = json.loads(raw) if is_json else tomllib.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PromptBankError(f"{where}: cannot parse ({exc})") from exc
    return bank_from_dict(data, where=where, default_name=path.stem if path.suffix else text_name)


def bank_from_dict(data: Mapping[str, Any], *, where: str = "prompt bank", default_name: str = "custom") -> PromptBank:
    """Validate a bank given as a mapping (the parsed TOML/JSON)."""
    problems: list[str] = []
    prompts_raw = data.get("prompts")
    if not isinstance(prompts_raw, Mapping) or not prompts_raw:
        raise PromptBankError(f"{where}: needs a [prompts] table mapping each class to a list of prompts")
    classes = data.get("classes", list(prompts_raw))
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        problems.append("'classes' must be a list of class names")
        classes = list(prompts_raw)
    if len(set(classes)) != len(classes):
        problems.append(f"'classes' has duplicates: {classes}")
    if len(classes) < 2:
        problems.append(f"a bank needs at least 2 classes, got {classes}")
    prompts: dict[str, tuple[str, ...]] = {}
    for c in classes:
        p = prompts_raw.get(c)
        if not isinstance(p, list) or not p or not all(isinstance(s, str) and s.strip() for s in p):
            problems.append(f"class {c!r} needs a non-empty list of prompt strings in [prompts]")
        else:
            prompts[c] = tuple(s.strip() for s in p)
    extra = sorted(set(prompts_raw) - set(classes))
    if extra:
        problems.append(f"[prompts] has classes {extra} missing from 'classes' {classes}")
    templates = data.get("templates", ["{}"])
    if not isinstance(templates, list) or not templates:
        problems.append("'templates' must be a non-empty list of strings")
        templates = ["{}"]
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1 or re.search(r"\{[^}]", t):
            problems.append(f"template {t!r} must contain exactly one '{{}}' slot and no other braces")
    aliases_raw = data.get("aliases", {})
    aliases = {}
    if not isinstance(aliases_raw, Mapping):
        problems.append("[aliases] must map class names to lists of alternative label names")
    else:
        for c, names in aliases_raw.items():
            if c not in classes:
                problems.append(f"[aliases] names unknown class {c!r}")
            elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                problems.append(f"[aliases] {c!r} must be a list of strings")
            else:
                aliases[c] = tuple(names)
    if problems:
        raise PromptBankError(f"{where}: " + "; ".join(problems))
    return PromptBank(
        name=str(data.get("name", default_name)), classes=tuple(classes), prompts=prompts,
        templates=tuple(templates), description=str(data.get("description", "")),
        modality=str(data.get("modality", "")), aliases=aliases, source=where,
    )


def text_aligned(backbone) -> bool:
    """Whether a backbone's text tower shares the image embedding space (CLIP-style contrastive training)."""
    for obj in (backbone, getattr(backbone, "entry", None)):
        if obj is not None and hasattr(obj, "text_aligned"):
            return bool(obj.text_aligned)
    entry = getattr(backbone, "entry", None)
    return bool(getattr(entry, "has_text", False)) and getattr(entry, "family", "") in {"open_clip", "clip", "hf_clip"}


def class_text_embeddings(backbone, bank: PromptBank, *, batch_size: int = 256) -> np.ndarray:
    """(K, d) class embeddings: each prompt x template encoded, L2-normalised, averaged per class, renormalised.

    ``backbone`` is anything with ``encode_text(list[str]) -> (n, d)`` (a breastclip Backbone) or such a callable.
    """
    encode = backbone if callable(backbone) and not hasattr(backbone, "encode_text") else backbone.encode_text
    out = []
    for c in bank.classes:
        texts = bank.texts(c)
        emb = np.concatenate([np.asarray(encode(texts[i:i + batch_size]), dtype=np.float64)
                              for i in range(0, len(texts), batch_size)])
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        mean = emb.mean(axis=0)
        out.append(mean / max(np.linalg.norm(mean), 1e-12))
    return np.stack(out)
