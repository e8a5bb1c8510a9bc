"""Model selection by repeated, stratified, patient-grouped k-fold cross-validation: arrays in, ranked results out.

The rows given here are the selection rows (train+val of a run); the test split never reaches this module. Every
candidate (a head, its fixed hyperparameters and one point of its grid) is fitted on each fold's training part and
scores the held-out part by ROC AUC (macro one-vs-rest for several classes). Its out-of-fold probabilities are kept,
so an ensemble of the top candidates is scored on the very same folds without refitting anything. Fold results are
cached on disk under a key of (candidate, X, y, folds): a rerun costs a hash. Folds run in parallel with joblib.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from breastclip.atomic import TMP_SUFFIX, atomic_path
from breastclip.evaluation.selection import SelectionScore
from breastclip.heads.io import HeadFormatError, load_head

log = logging.getLogger("breastclip.run")

Fold = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class CVSettings:
    """``n_splits``-fold CV repeated ``n_repeats`` times with different shuffles (seeds ``seed + r``)."""

    n_splits: int = 5
    n_repeats: int = 2
    seed: int = 0
    n_jobs: int = 2


@dataclass(frozen=True)
class Candidate:
    """One configuration to cross-validate: ``method`` (the run's label), ``head`` (a ``HEADS`` key), ``params``."""

    method: str
    head: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        p = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()) if not isinstance(v, np.ndarray))
        return f"{self.method} ({p})" if p else self.method


@dataclass
class CVResult:
    """Scores of one candidate on every fold and its out-of-fold probabilities ``oof (n_repeats, n, n_classes)``."""

    candidate: Candidate
    fold_scores: np.ndarray
    oof: np.ndarray
    from_cache: bool = False

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.fold_scores))

    @property
    def sd(self) -> float:
        return float(np.nanstd(self.fold_scores, ddof=1)) if np.isfinite(self.fold_scores).sum() > 1 else 0.0

    def selection_score(self, metric: str = "roc_auc") -> SelectionScore:
        return SelectionScore(metric=f"cv_{metric}", value=self.mean, source="cv", sd=self.sd,
                              n_folds=int(len(self.fold_scores)))


def cv_folds(y: np.ndarray, groups: np.ndarray | None, settings: CVSettings) -> list[Fold]:
    """Repeated stratified k-fold; grouped (no patient on both sides) when ``groups`` are given. ``n_splits`` drops
    to the smallest class's count (patients) when that is smaller, and must stay at least 2."""
    y = np.asarray(y)
    _, y_idx = np.unique(y, return_inverse=True)
    if groups is not None:
        groups = np.asarray(groups)
        per_class = [len(np.unique(groups[y_idx == k])) for k in range(y_idx.max() + 1)]
    else:
        per_class = np.bincount(y_idx).tolist()
    k = min(int(settings.n_splits), int(min(per_class)))
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 {'patients' if groups is not None else 'images'} of "
                         f"every class in train+val; the smallest class has {min(per_class)}")
    folds: list[Fold] = []
    for r in range(int(settings.n_repeats)):
        seed = int(settings.seed) + r
        if groups is None:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            folds += [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y_idx)]
        else:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            folds += [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y_idx, groups)]
    return folds


def expand_grid(params: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Fixed ``params`` combined with every point of ``grid`` (``{name: [values]}``); just ``params`` without one."""
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"params_grid.{name} must be a non-empty list of values, got {values!r}")
    names = list(grid)
    return [{**params, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*(list(grid[n]) for n in names))] or [dict(params)]


def fold_score(y_idx: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of held-out probabilities (binary: column 1; several classes: macro one-vs-rest over the classes the
    fold holds). NaN when the fold holds one class."""
    present = np.unique(y_idx)
    if len(present) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return float(roc_auc_score(y_idx, proba[:, 1]))
    if len(present) == 2:
        return float(roc_auc_score(y_idx == present[1], proba[:, present[1]]))
    q = proba[:, present]
    q = q / np.where(q.sum(1, keepdims=True) > 0, q.sum(1, keepdims=True), 1.0)
    return float(roc_auc_score(np.searchsorted(present, y_idx), q, multi_class="ovr"))


def _fit_fold(est, X: np.ndarray, y_idx: np.ndarray, tr: np.ndarray, te: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities (len(te), n_classes) of a clone fitted on ``tr`` (columns by integer label)."""
    from breastclip.heads._torch_base import torch_threads  # one thread per worker: folds are the parallelism

    with torch_threads("cpu"):
        model = clone(est).fit(X[tr], y_idx[tr])
        p = model.predict_proba(X[te])
    out = np.zeros((len(te), n_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"array": _digest(v)}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


#: Bumped when what a cached fold result or refit means changes (scoring, fold layout, a head's fitting code):
#: together with the package version it keeps results of older code from being reused.
CV_CACHE_FORMAT = 2


def _estimator_key(head: str, est: Any, data_key: str) -> str:
    """Cache key of one estimator on one data set: every hyperparameter of the built estimator (seed, text
    embeddings' digest), not just the grid's, the estimator's class and the code's version."""
    from breastclip import __version__

    code = [__version__, CV_CACHE_FORMAT, f"{type(est).__module__}.{type(est).__qualname__}"]
    return hashlib.sha256(json.dumps([head, _plain(est.get_params(deep=False)), data_key, code], sort_keys=True,
                                     default=str).encode()).hexdigest()[:24]


def cross_validate(
    candidates: Sequence[Candidate],
    make: Callable[[Candidate], Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    *,
    n_repeats: int,
    n_jobs: int = 2,
    cache_dir: str | Path | None = None,
) -> list[CVResult]:
    """Cross-validate every candidate on ``folds`` (``make(candidate)`` builds its unfitted estimator). ``y`` holds
    labels; probabilities come back with columns in ``np.unique(y)`` order. Cached results are reused."""
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    n_classes = len(classes)
    data_key = _digest(np.asarray(X, dtype=np.float64), y_idx, *[np.concatenate([tr, [-1], te]) for tr, te in folds])
    cache = Path(cache_dir) if cache_dir else None
    ests = [make(c) for c in candidates]
    keys = [_estimator_key(c.head, e, data_key) for c, e in zip(candidates, ests, strict=True)]
    results: dict[int, CVResult] = {}
    todo: list[int] = []
    for i, cand in enumerate(candidates):
        hit = _load(cache / f"{keys[i]}.npz", cand, len(folds)) if cache else None
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)
    tasks = [(i, f) for i in todo for f in range(len(folds))]
    if tasks:
        probas = Parallel(n_jobs=n_jobs)(
            delayed(_fit_fold)(ests[i], X, y_idx, folds[f][0], folds[f][1], n_classes) for i, f in tasks)
        per: dict[int, dict[int, np.ndarray]] = {}
        for (i, f), p in zip(tasks, probas, strict=True):
            per.setdefault(i, {})[f] = p
        per_repeat = len(folds) // max(1, n_repeats)
        for i in todo:
            oof = np.full((n_repeats, len(y_idx), n_classes), np.nan)
            scores = np.zeros(len(folds))
            for f, (_, te) in enumerate(folds):
                oof[min(f // per_repeat, n_repeats - 1), te] = per[i][f]
                scores[f] = fold_score(y_idx[te], per[i][f])
            results[i] = CVResult(candidates[i], scores, oof)
            if cache:
                _save(cache / f"{keys[i]}.npz", results[i])
    return [results[i] for i in range(len(candidates))]


REFIT_PREFIX = "refit-"  # a refitted head's folder in the cache (head.json + weights.safetensors)


def refit(candidate: Candidate, make: Callable[[Candidate], Any], X: np.ndarray, y: np.ndarray, *,
          cache_dir: str | Path | None = None) -> tuple[Any, bool]:
    """``make(candidate)`` fitted on all of ``X, y`` (the selection rows, after CV chose the candidate), and whether
    it came from the cache. Heads save and load without loss, so a cached fit predicts exactly what a new one
    would; the key covers every hyperparameter of the built estimator (its seed too), X and the labels."""
    est = make(candidate)
    if not cache_dir:
        return est.fit(X, y), False
    y = np.asarray(y)
    classes, y_idx = np.unique(y, return_inverse=True)
    data_key = _digest(np.asarray(X, dtype=np.float64), y_idx) + classes.dtype.str + json.dumps(
        [str(c) for c in classes])
    folder = Path(cache_dir) / f"{REFIT_PREFIX}{_estimator_key(candidate.head, est, data_key)}"
    damaged = False
    if folder.is_dir():
        try:
            return load_head(folder), True
        except (HeadFormatError, OSError, ValueError, KeyError, TypeError) as e:  # damaged: refitted, never trusted
            log.warning("cached refit %s is unreadable (%s); refitting", folder.name, e)
            damaged = True
    est.fit(X, y)
    _save_head_atomically(est, folder, replace_damaged=damaged)
    return est, False


def _save_head_atomically(head: Any, folder: Path, *, replace_damaged: bool = False) -> None:
    """Save into a temporary folder beside ``folder``, then rename it into place: a reader sees all or nothing.
    When another run got there first its copy is kept; a damaged entry is first renamed away (atomic), then
    deleted."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=TMP_SUFFIX))
    try:
        head.save(tmp, overwrite=True)
        if replace_damaged:
            trash = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=TMP_SUFFIX))
            try:
                os.rename(folder, trash / "damaged")
            except FileNotFoundError:  # another run replaced it already
                pass
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(tmp, folder)
    except OSError as e:  # a full disk, or another run's copy already in place: the run goes on either way
        if not folder.is_dir():
            log.warning("could not cache the refitted head %s: %s", folder.name, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path, cand: Candidate, n_folds: int) -> CVResult | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            scores, oof = z["scores"], z["oof"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: recomputed, never trusted
        log.warning("cross-validation cache entry %s is unreadable; recomputing it", path.name)
        return None
    return CVResult(cand, scores, oof, from_cache=True) if len(scores) == n_folds else None


def _save(path: Path, result: CVResult) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, scores=result.fold_scores, oof=result.oof)


def rank(results: Sequence[CVResult]) -> list[CVResult]:
    """Best mean CV score first (NaN last); ties keep the given order."""
    return sorted(results, key=lambda r: -r.mean if np.isfinite(r.mean) else np.inf)


def ensemble_result(members: Sequence[CVResult], y: np.ndarray, folds: Sequence[Fold], method: str) -> CVResult:
    """The mean-probability ensemble of ``members`` scored on the same folds from their out-of-fold probabilities
    (no refit). Slightly optimistic when the members were themselves picked on these folds: say so where shown."""
    _, y_idx = np.unique(np.asarray(y), return_inverse=True)
    oof = np.mean([m.oof for m in members], axis=0)
    n_repeats = oof.shape[0]
    per_repeat = len(folds) // max(1, n_repeats)
    scores = np.array([fold_score(y_idx[te], oof[min(f // per_repeat, n_repeats - 1), te])
                       for f, (_, te) in enumerate(folds)])
    params = {"members": tuple((m.candidate.head, dict(m.candidate.params)) for m in members)}
    return CVResult(Candidate(method, "ensemble", params), scores, oof)


def out_of_fold_mean(result: CVResult) -> np.ndarray:
    """Each row's probability averaged over the repeats (every row is held out once per repeat)."""
    return np.nanmean(result.oof, axis=0)
