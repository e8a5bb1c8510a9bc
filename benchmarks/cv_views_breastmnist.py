"""BreastMNIST: rank feature views x heads x grid points by cross-validation on train+val only; the last line printed
is one JSON object.

    python benchmarks/cv_views_breastmnist.py [--views V ...] [--seeds 0 1 2] [--embed-only] [--time-rounds 3]

What it does, in the library's own terms: the official split is read by the reader of ``examples/breastmnist.toml``
(its data section), the **test rows are dropped before anything else** (asserted), train+val is embedded with each
candidate view by the library's embedding engine through the user's embedding cache, and every (view, head, grid
point) is cross-validated by ``heads.model_selection`` with the folds the run uses (``evaluation.cv_splits`` x
``cv_repeats`` from the example, stratified and grouped by near-duplicate images, fold shuffles from
``experiment.seed``) for each seed of the example (0, 1, 2). Heads are built by the pipeline's own ``build_head`` with
that seed. The mean-probability ensembles of each view's top-k methods are scored on the same out-of-fold
probabilities (no refit; slightly optimistic, as in the run). Fold results are cached (``<cache>/cv_folds``), so a
rerun costs only hashing.

Embedding time per view: the engine's time when it computed the view's train+val embeddings here (null when they
came from the cache), and an interleaved timing (``--time-rounds`` rounds, ABBA order, median and spread) of
``--time-sample`` train images embedded fresh into a temporary cache, with the load average read around it (the
protocol of benchmarks/_protocol.py). Scaled to the example's 780 images. Research use only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import Interleaved, load_1m, load_verdict  # noqa: E402

from breastclip import RESEARCH_ONLY  # noqa: E402
from breastclip.backbones import embed_manifest  # noqa: E402
from breastclip.config import MethodSection, load_config  # noqa: E402
from breastclip.heads.model_selection import (  # noqa: E402
    Candidate,
    CVResult,
    cross_validate,
    cv_folds,
    ensemble_result,
    expand_grid,
    rank,
)
from breastclip.pipeline import methods  # noqa: E402
from breastclip.pipeline.cv_select import cv_settings, selection_groups  # noqa: E402
from breastclip.pipeline.data_step import load_manifest  # noqa: E402
from breastclip.pipeline.seeds import with_seed  # noqa: E402
from breastclip.user_cache import cache_root, cv_folds_dir  # noqa: E402

CONFIG = ROOT / "examples" / "breastmnist.toml"
DEFAULT_NPZ = (Path(os.environ.get("BREASTCLIP_SHARED_DATA", ROOT.parent / "shared" / "data")) / "breastmnist"
               / "original" / "breastmnist.npz")
N_EXAMPLE_IMAGES = 780  # the example embeds train + val + test

#: Candidate views, cheapest first within each backbone (x<size>: extra input sizes; the entry's own size is kept).
VIEWS = (
    "efficientnet-lite0@stages+mirror+x160",  # the example's view before this search
    "efficientnet-lite0@stages+mirror",
    "efficientnet-lite0@stages+final+mirror+x160",
    "efficientnet-lite0@stages+mirror+x112+x160",
    "efficientnet-lite1@stages",
    "efficientnet-lite1@stages+mirror",
    "efficientnet-lite2@stages+mirror",
)

#: (method, head, fixed params, grid). SVM gamma is relative: ``gamma_scale`` multiplies the 'scale' gamma
#: (1 / n_features after standardising), so one grid fits every view's width.
METHODS: tuple[tuple[str, str, dict, dict], ...] = (
    ("svm_rbf", "svm_rbf", {}, {"C": [3.0, 10.0], "gamma_scale": [0.5, 1.0]}),
    ("knn", "knn", {}, {"k": [5, 11, 21]}),
    ("simpleshot", "simpleshot", {}, {}),
    ("linear_probe", "linear_probe", {"standardize": True, "refine": 0}, {}),
    ("mlp", "mlp", {}, {}),
    ("tip_adapter", "tip_adapter", {"center": True}, {}),
)
TOP_K = (2, 3, 4)


def selection_manifest(cfg):
    """The example's manifest with the test rows dropped (the only rows this script ever touches)."""
    full = load_manifest(cfg)
    keep = full.df["split"].isin(["train", "val"]).to_numpy()
    man = full.subset(keep)
    del full
    assert set(man.df["split"]) == {"train", "val"}, "test rows must be dropped before anything else"
    assert not (man.df["split"] == "test").any()
    return man


def embed_views(man, views, cache: Path) -> dict[str, dict]:
    out = {}
    for v in views:
        res = embed_manifest(man, v, cache_dir=cache, progress=False)
        if res.failures:
            raise RuntimeError(f"{v}: {len(res.failures)} images failed: {res.failures[:3]}")
        if list(res.ids) != man.df["id"].astype(str).tolist():
            raise RuntimeError(f"{v}: embedded ids do not follow the manifest")
        out[v] = {"X": np.asarray(res.X, dtype=np.float32), "dim": int(res.X.shape[1]),
                  "computed": int(res.n_computed), "cached": int(res.n_cached),
                  "seconds_computed": round(res.seconds, 1) if res.n_computed else None}
        print(f"embedded {v}: d={res.X.shape[1]}, {res.n_computed} computed, {res.n_cached} cached, "
              f"{res.seconds:.1f} s, load {load_1m()}", flush=True)
    return out


def time_views(man, views, n: int, rounds: int) -> dict:
    """Interleaved fresh embedding of ``n`` train images per view (temporary cache, pixel cache off)."""
    sub = man.subset(np.arange(len(man.df)) < n)
    with tempfile.TemporaryDirectory() as tmp:
        counter = {"k": 0}

        def job(v):
            def run() -> int:
                counter["k"] += 1  # a new cache folder each time: every call computes
                embed_manifest(sub, v, cache_dir=Path(tmp) / str(counter["k"]), progress=False, pixel_cache="never")
                return len(sub)
            return run

        for v in views:  # warm-up: weights loaded and kernels initialised once per view, untimed
            job(v)()
        bench = Interleaved({v: job(v) for v in views}, rounds=rounds,
                            log=lambda s: print("  timing " + s, flush=True)).run()
    summ = bench.summary()
    out = {}
    for v in views:
        med = summ[v]["per_s"]["median"]
        out[v] = {"images_per_s": summ[v]["per_s"], "est_seconds_780": round(N_EXAMPLE_IMAGES / med, 0)}
    return {"per_view": out, "load": load_verdict(bench.loads), "n_images": len(sub), "rounds": rounds}


def method_section(name: str, head: str, params: dict) -> MethodSection:
    return MethodSection(name=name, head=head, params=dict(params))


def _svm_params(p: dict, dim: int) -> dict:
    """``gamma_scale`` -> the head's numeric gamma for this view's width ('scale' after standardising is 1/d)."""
    p = dict(p)
    s = p.pop("gamma_scale", None)
    if s is not None:
        p["gamma"] = "scale" if s == 1.0 else float(s) / dim
    return p


def cv_view(cfg_s, X: np.ndarray, y: np.ndarray, folds, n_repeats: int, n_jobs: int, cache: Path,
            only: set[str] | None) -> list[CVResult]:
    results = []
    dim = X.shape[1]
    for name, head, fixed, grid in METHODS:
        if only and name not in only:
            continue
        points = expand_grid(fixed, grid)
        cands = [Candidate(name, head, _svm_params(p, dim) if head == "svm_rbf" else p) for p in points]

        def make(c: Candidate, cfg=cfg_s):
            return methods.build_head(methods.Plan(c.method, method_section(c.method, c.head, c.params), None), cfg)

        t0 = time.perf_counter()
        res = cross_validate(cands, make, X, y, folds, n_repeats=n_repeats, n_jobs=n_jobs, cache_dir=cache)
        for r, p in zip(res, points, strict=True):
            r.candidate = Candidate(name, head, p)  # report the grid point as written (gamma_scale)
        hit = all(r.from_cache for r in res)
        print(f"    {name}: {len(res)} points in {time.perf_counter() - t0:.1f} s{' (cache)' if hit else ''}; "
              f"best {max(r.mean for r in res):.4f}", flush=True)
        results.extend(res)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--views", nargs="+", default=list(VIEWS))
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the example's experiment.seeds")
    ap.add_argument("--methods", nargs="+", default=None, help="only these methods (names of METHODS)")
    ap.add_argument("--svm-C", nargs="+", type=float, default=None, help="replace the SVM's C grid")
    ap.add_argument("--cache", type=Path, default=None, help="cache root (default: BREASTCLIP_CACHE or ~/.cache)")
    ap.add_argument("--embed-only", action="store_true", help="embed the views into the cache and stop")
    ap.add_argument("--time-sample", type=int, default=16)
    ap.add_argument("--time-rounds", type=int, default=3, help="0: no interleaved timing")
    ap.add_argument("--top", type=int, default=25, help="rows of the ranking printed")
    args = ap.parse_args()
    t_start = time.perf_counter()
    load0 = os.getloadavg()

    cfg = load_config(CONFIG, offline=True, overrides=[f"data.source={args.npz.resolve()}"]
                      + ([f"embed.cache_dir={args.cache.resolve()}"] if args.cache else []))
    cache = cache_root(args.cache)
    man = selection_manifest(cfg)
    y = man.df["label"].astype(str).to_numpy()
    print(f"train+val: {len(man)} images ({dict(man.df['split'].value_counts())}); test rows dropped", flush=True)
    emb = embed_views(man, args.views, cache)
    if args.embed_only:
        print(json.dumps({"benchmark": "cv_views_breastmnist", "embed_only": True,
                          "views": {v: {k: e[k] for k in ("dim", "computed", "cached", "seconds_computed")}
                                    for v, e in emb.items()}}))
        return

    groups = selection_groups(cfg, man, man.df["id"].astype(str).tolist())  # the run's own CV groups
    seeds = args.seeds if args.seeds is not None else list(cfg.experiment.seeds)
    only = set(args.methods) if args.methods else None
    if args.svm_C:
        METHODS[0][3]["C"] = list(args.svm_C)
    # per (view, method label incl. grid point): CV mean per seed, fold sd per seed
    rows: dict[tuple[str, str], dict] = {}
    t_cv: dict[str, float] = {}
    for s in seeds:
        cfg_s = with_seed(cfg, s)
        st = cv_settings(cfg_s)
        folds = cv_folds(y, groups, st)
        print(f"seed {s}: {len(folds)} folds ({st.n_splits}-fold x {st.n_repeats}, grouped by near-duplicates)",
              flush=True)
        for v in args.views:
            print(f"  {v}", flush=True)
            t0 = time.perf_counter()
            res = cv_view(cfg_s, emb[v]["X"], y, folds, st.n_repeats, st.n_jobs, cv_folds_dir(args.cache), only)
            per_method = {}
            for r in res:
                per_method.setdefault(r.candidate.method, []).append(r)
            best = [rank(rs)[0] for rs in per_method.values()]
            ens = [ensemble_result(rank(best)[:k], y, folds, f"ensemble_top{k}") for k in TOP_K if k <= len(best)]
            for r in [*res, *ens]:
                key = (v, r.candidate.describe() if r.candidate.head != "ensemble" else r.candidate.method)
                row = rows.setdefault(key, {"view": v, "candidate": key[1], "method": r.candidate.method,
                                            "cv_mean": {}, "fold_sd": {}})
                row["cv_mean"][s], row["fold_sd"][s] = r.mean, r.sd
                if r.candidate.head == "ensemble":
                    row.setdefault("members", {})[s] = [m[0] for m in r.candidate.params["members"]]
            t_cv[v] = t_cv.get(v, 0.0) + time.perf_counter() - t0

    table = []
    for row in rows.values():
        m = np.array([row["cv_mean"][s] for s in seeds])
        table.append({**{k: row[k] for k in ("view", "candidate", "method")},
                      "cv_auc_mean": round(float(m.mean()), 4),
                      "cv_auc_sd_seeds": round(float(m.std(ddof=1)), 4) if len(m) > 1 else None,
                      "fold_sd_mean": round(float(np.mean([row["fold_sd"][s] for s in seeds])), 4),
                      "per_seed": [round(float(x), 4) for x in m],
                      **({"members": row["members"]} if "members" in row else {})})
    table.sort(key=lambda r: -r["cv_auc_mean"])
    best_per_view = {}
    for r in table:
        best_per_view.setdefault(r["view"], r)
    timing = time_views(man, args.views, args.time_sample, args.time_rounds) if args.time_rounds > 0 else None

    print(f"\nBreastMNIST train+val only (n={len(man)}; test rows dropped), CV AUC mean over seeds {seeds} "
          f"(+- sd over seeds; fold sd = mean over seeds of the sd over {len(folds)} folds)")
    print(f"{'view':46s} {'candidate':48s} {'CV AUC':>16s} {'fold sd':>8s}")
    for r in table[: args.top]:
        sd = f"{r['cv_auc_sd_seeds']:.4f}" if r["cv_auc_sd_seeds"] is not None else "-"
        print(f"{r['view']:46s} {r['candidate'][:48]:48s} {r['cv_auc_mean']:.4f} +- {sd} {r['fold_sd_mean']:8.4f}")
    print("\nbest per view (embedding: computed here / interleaved estimate for the example's 780 images):")
    for v, r in best_per_view.items():
        e = emb[v]
        est = timing["per_view"][v]["est_seconds_780"] if timing else None
        print(f"  {v:46s} d={e['dim']:5d} {r['candidate'][:40]:40s} {r['cv_auc_mean']:.4f}  "
              f"embed {e['seconds_computed']} s / est {est} s; CV {t_cv[v]:.0f} s")
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.1f} -> {load1[0]:.1f} on a shared 2-core machine. {RESEARCH_ONLY}")
    print(json.dumps({
        "benchmark": "cv_views_breastmnist", "config": "examples/breastmnist.toml", "rows": "train+val only",
        "n_rows": len(man), "seeds": seeds, "folds_per_seed": len(folds),
        "views": {v: {"dim": e["dim"], "computed": e["computed"], "cached": e["cached"],
                      "embed_seconds_computed": e["seconds_computed"], "cv_seconds": round(t_cv[v], 1)}
                  for v, e in emb.items()},
        "timing": timing, "best_per_view": best_per_view, "table": table,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "load_average_before_after": [round(load0[0], 2), round(load1[0], 2)], "research_only": RESEARCH_ONLY,
    }, default=float))


if __name__ == "__main__":
    main()
