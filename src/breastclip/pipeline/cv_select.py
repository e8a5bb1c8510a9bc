"""``evaluation.selection = "cv"``: each method's hyperparameter grid is cross-validated over train+val, the best
point is refitted on train+val, and the test split is scored once by that refitted model.

The hook is :class:`CVSelector`, used by the method step in place of :func:`methods.fit_predict`. Only train+val
rows are handed to :mod:`breastclip.heads.model_selection`; the test rows are touched once, by ``predict_proba`` of
the refitted model. In the predictions table, train and val rows carry out-of-fold probabilities (mean over the
repeats), so operating points chosen on validation rows are chosen on held-out figures, and test rows carry the
refitted model's. A method whose kind pools other methods (``MethodKind.pools_methods``: the ensemble) averages the
top ``top_k`` (default 3) other methods of the same backbone, ranked by their CV figure, each at its chosen point.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from breastclip.config import ConfigError, ExperimentConfig
from breastclip.data.manifest import Manifest
from breastclip.heads.model_selection import (
    Candidate,
    CVResult,
    CVSettings,
    cross_validate,
    cv_folds,
    ensemble_result,
    expand_grid,
    out_of_fold_mean,
    rank,
    refit,
)
from breastclip.method_registry import Inputs, method_kind
from breastclip.pipeline import methods
from breastclip.pipeline.embed_step import EmbeddingSet
from breastclip.pipeline.run_folder import RunFolder
from breastclip.predictions import make_predictions
from breastclip.user_cache import cv_folds_dir, leak_fingerprints_file

log = logging.getLogger("breastclip.run")

SELECTION_ROWS = ("train", "val")


def cv_selection(cfg: ExperimentConfig) -> bool:
    """Whether the run selects by cross-validation (``evaluation.selection = "cv"``)."""
    return cfg.evaluation.selection == "cv"


def cv_settings(cfg: ExperimentConfig) -> CVSettings:
    ev = cfg.evaluation
    return CVSettings(n_splits=ev.cv_splits, n_repeats=ev.cv_repeats, seed=cfg.experiment.seed, n_jobs=ev.cv_jobs)


def method_grid(plan: methods.Plan) -> dict[str, list]:
    """The method's ``params_grid`` from the config, else its head's ``default_grid`` (minus fixed params)."""
    grid = dict(plan.method.params_grid)
    if not grid:
        cls = methods.head_class(plan.method.head)
        grid = {k: list(v) for k, v in getattr(cls, "default_grid", {}).items() if k not in plan.method.params}
    return grid


def selection_groups(cfg: ExperimentConfig, manifest: Manifest, ids: list[str]) -> np.ndarray:
    """The CV groups of ``ids``: patients, merged with near-duplicate images when the split grouped them
    (``split.options.group_duplicates``). The same for every seed of a run."""
    if cfg.split.options.get("group_duplicates"):
        from breastclip.data.leaks import duplicate_groups

        keys = duplicate_groups(manifest, cache=leak_fingerprints_file(cfg.embed.cache_dir or None))
        pos = {i: k for k, i in enumerate(manifest.df["id"].astype(str))}
        return np.asarray([keys[pos[i]] for i in ids]).astype(str)
    return manifest.df.set_index("id").loc[ids, "patient_id"].astype(str).to_numpy()


@dataclass
class CVSelector:
    """Cross-validates and refits the methods of one run; keeps each backbone's results for the ensemble."""

    cfg: ExperimentConfig
    manifest: Manifest
    ids: list[str]
    #: the CV groups of ``ids`` (:func:`selection_groups`) when the caller has them already: every seed of a run
    #: shares them, and near-duplicate grouping fingerprints every image
    groups: np.ndarray | None = None
    settings: CVSettings = field(init=False)
    results: dict[str, dict[str, CVResult]] = field(default_factory=dict)  # backbone -> method label -> best
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # backbone -> method label -> refitted head

    def __post_init__(self) -> None:
        self.settings = cv_settings(self.cfg)
        df = self.manifest.df.set_index("id").loc[self.ids]
        self.split = df["split"].to_numpy()
        self.y = df["label"].astype(str).to_numpy()
        self.sel = np.isin(self.split, SELECTION_ROWS)
        if self.groups is None:
            self.groups = selection_groups(self.cfg, self.manifest, self.ids)
        self.folds = cv_folds(self.y[self.sel], self.groups[self.sel], self.settings)
        self.cache = cv_folds_dir(self.cfg.embed.cache_dir or None)

    def _make(self, method, text: dict | None):
        def make(cand: Candidate):
            return methods.build_head(methods.Plan(cand.method, _with_params(method, cand.params), None), self.cfg,
                                      text)

        return make

    def fit_predict(self, plan: methods.Plan, emb: EmbeddingSet, text: dict | None, folder: RunFolder
                    ) -> methods.MethodOutcome:
        """Select ``plan``'s hyperparameters by CV on train+val, refit there, predict every split."""
        if plan.kind.inputs is not Inputs.EMBEDDINGS:
            raise ConfigError(f"method '{plan.method.name}': the CNN baseline is not cross-validated; run it with "
                              "evaluation.selection = \"val\" or in a separate experiment")
        t0 = time.perf_counter()
        X = emb.rows(self.ids)
        Xs, ys = X[self.sel], self.y[self.sel]
        if plan.kind.pools_methods:
            best, table, members = self._ensemble(plan, emb.backbone_name, ys)
            # the members' own refitted heads (same rows, same hyperparameters and seed): nothing is fitted twice
            fitted = self.models[emb.backbone_name]
            assert plan.kind.pool is not None
            head = plan.kind.pool([fitted[m.candidate.method] for m in members])
            chosen = {k: v for k, v in head.get_params(deep=False).items() if v is not None}
        else:
            points = expand_grid(plan.method.params, method_grid(plan))
            cands = [Candidate(plan.label, plan.method.head, p) for p in points]
            table = rank(cross_validate(cands, self._make(plan.method, text), Xs, ys, self.folds,
                                        n_repeats=self.settings.n_repeats, n_jobs=self.settings.n_jobs,
                                        cache_dir=self.cache))
            best = table[0]
            chosen = dict(best.candidate.params)
            # refit on all of train+val (a rerun loads the same fit from the cache)
            head, cached = refit(best.candidate, self._make(plan.method, text), Xs, ys, cache_dir=self.cache)
            if cached:
                log.info("%s: the refit on train+val comes from the cache", plan.label)
            self.results.setdefault(emb.backbone_name, {})[plan.label] = best
            self.models.setdefault(emb.backbone_name, {})[plan.label] = head
        log.info("%s: CV over train+val (%d folds) chose %s: AUC %.3f +- %.3f%s", plan.label, len(self.folds),
                 best.candidate.describe(), best.mean, best.sd,
                 " (from the cache)" if best.from_cache else "")
        proba = np.zeros((len(self.ids), len(self.manifest.classes)))
        classes_sel = sorted(set(ys))
        proba[self.sel] = methods.align_proba(out_of_fold_mean(best), classes_sel, self.manifest.classes)
        rest = ~self.sel
        if rest.any():
            proba[rest] = methods.align_proba(head.predict_proba(X[rest]), [str(c) for c in head.classes_],
                                              self.manifest.classes)
        df = self.manifest.df.set_index("id").loc[self.ids]
        pred = make_predictions(ids=self.ids, y_true=self.y, proba=proba, classes=self.manifest.classes,
                                method=plan.label, split=list(self.split), patient_id=df["patient_id"].tolist())
        head.save(folder.model_dir(plan.label), overwrite=True)
        folder.write_method_text(plan.label, RunFolder.CV_RESULTS, _table_csv(table))
        out = methods.MethodOutcome(plan.label, _with_params(plan.method, chosen), plan.backbone,
                                    folder.method_dir(plan.label), pred, None, seconds=time.perf_counter() - t0,
                                    model=head)
        out.selection = best.selection_score(self.cfg.evaluation.primary_metric)
        return out

    def _ensemble(self, plan: methods.Plan, backbone: str, ys: np.ndarray
                  ) -> tuple[CVResult, list[CVResult], list[CVResult]]:
        """The pooled result, its CV table, and its members (the top ``top_k`` methods of ``backbone``)."""
        top_k = int(plan.method.params.get("top_k", 3))
        pool = rank([r for r in self.results.get(backbone, {}).values()
                     if not method_kind(r.candidate.head).pools_methods])
        if len(pool) < 2:
            raise ConfigError(f"method '{plan.method.name}' (ensemble) needs at least two cross-validated methods "
                              f"on {backbone} listed before it; found {len(pool)}")
        ens = ensemble_result(pool[:top_k], ys, self.folds, plan.label)
        return ens, [ens, *pool], pool[:top_k]


def _with_params(method, params: Mapping[str, Any]):
    from dataclasses import replace

    return replace(method, params=method_kind(method.head).estimator_params(params))


def _table_csv(table: list[CVResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "method", "head", "params", "cv_mean", "cv_sd", "n_folds", "fold_scores"])
    for i, r in enumerate(table, 1):
        params = {k: v for k, v in r.candidate.params.items() if not isinstance(v, np.ndarray)}
        w.writerow([i, r.candidate.method, r.candidate.head, params, f"{r.mean:.6f}", f"{r.sd:.6f}",
                    len(r.fold_scores), " ".join(f"{s:.4f}" for s in r.fold_scores)])
    return buf.getvalue()
