"""Bootstrap confidence intervals, resampling patients (cluster bootstrap) when patient ids exist.

Method: percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with a fixed seed; optionally BCa (bias-corrected
and accelerated, Efron 1987, with the acceleration from a leave-one-patient-out jackknife). When ``groups`` (patient ids) are
given, each replicate draws as many patients as the sample holds, with replacement, and takes *all* of each drawn
patient's images (a patient drawn twice contributes its images twice). Images of one patient are correlated, so
resampling images instead would make intervals too narrow. Without groups (or when every group holds one image)
this is the ordinary image-level bootstrap.

Degenerate replicates: a replicate that lacks a class present in the full sample is skipped (macro metrics and
AUC would change meaning), and a metric that is undefined (NaN) in a replicate is skipped for that metric only.
Every interval reports how many replicates it used (``n_boot_used``) and skipped (``n_boot_skipped``); an interval
from fewer than 10 usable replicates is NaN.

Returned structure of :func:`bootstrap_metrics` (JSON-ready)::

    {metric: {"estimate": float, "ci_lo": float, "ci_hi": float, "n_boot_used": int, "n_boot_skipped": int}}

``estimate`` is the metric on the full sample, not the bootstrap mean. :func:`bootstrap_metrics` calls a statistic
on each replicate's row indices; :func:`bootstrap_weighted` hands a vectorised statistic all replicates at once as
per-image draw counts (same replicates, same result, much faster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

MIN_REPLICATES = 10


class ClusterResampler:
    """Draws bootstrap replicates; by patient when ``groups`` is given, else by image.

    A replicate is a draw of ``n_groups`` group codes with replacement. :meth:`replicates` turns each draw into row
    indices (every image of each drawn group), :meth:`multiplicities` into per-image draw counts; both read the
    same draws (drawn in blocks), so the loop and the vectorised paths see identical replicates.
    """

    def __init__(self, n: int, groups: Sequence | np.ndarray | None = None):
        self.n = int(n)
        self.grouped = groups is not None
        if groups is None:
            codes = np.arange(self.n)
        else:
            groups = np.asarray(groups)
            if groups.shape[0] != self.n:
                raise ValueError(f"groups has {groups.shape[0]} entries for {self.n} samples")
            codes = np.unique(groups.astype(str), return_inverse=True)[1].ravel()
        self.codes = codes
        self.n_groups = int(codes.max()) + 1 if codes.size else 0
        self.order = np.argsort(codes, kind="mergesort")
        self.sizes = np.bincount(codes, minlength=self.n_groups)
        self.starts = np.cumsum(self.sizes) - self.sizes

    @property
    def clustered(self) -> bool:
        """True when some group holds more than one image (a real cluster bootstrap)."""
        return self.grouped and self.n_groups < self.n

    def _indices(self, chosen: np.ndarray) -> np.ndarray:
        lengths = self.sizes[chosen]
        # position of every output slot inside its group's block of `order`
        offsets = np.repeat(self.starts[chosen] - (np.cumsum(lengths) - lengths), lengths)
        return self.order[offsets + np.arange(int(lengths.sum()))]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One replicate: row indices into the sample."""
        return self._indices(rng.integers(0, self.n_groups, size=self.n_groups))

    def _blocks(self, n_boot: int, seed: int, chunk: int = 250) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        left = int(n_boot)
        while left > 0 and self.n_groups > 0:
            size = min(chunk, left)
            yield rng.integers(0, self.n_groups, size=(size, self.n_groups))
            left -= size

    def replicates(self, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
        """Row indices of each replicate."""
        for block in self._blocks(n_boot, seed):
            for chosen in block:
                yield self._indices(chosen)

    def multiplicities(self, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
        """The same replicates as :meth:`replicates`, as (<= 250, n) matrices of draw counts per image."""
        for block in self._blocks(n_boot, seed):
            rows = block.shape[0]
            flat = (block + self.n_groups * np.arange(rows)[:, None]).ravel()
            counts = np.bincount(flat, minlength=rows * self.n_groups).reshape(rows, self.n_groups)
            yield counts[:, self.codes].astype(float)


def percentile_ci(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, NaNs dropped; NaN when fewer than 10 remain."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < MIN_REPLICATES:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def jackknife_values(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    groups: Sequence | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Leave-one-out values of every metric, leaving out one patient (all their images) at a time."""
    codes = np.arange(n) if groups is None else np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    rows = []
    for g in range(int(codes.max()) + 1 if n else 0):
        keep = np.flatnonzero(codes != g)
        rows.append(statistic(keep) if keep.size else {})
    names = next((list(r) for r in rows if r), [])
    return {m: np.array([r.get(m, np.nan) for r in rows], dtype=float) for m in names}


def bca_ci(values: np.ndarray, estimate: float, jackknife: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Bias-corrected and accelerated interval (Efron 1987): bias from the share of replicates below the
    estimate, acceleration from the (patient) jackknife. NaN with fewer than 10 usable replicates; falls back to
    the percentile interval when every replicate lies on one side of the estimate."""
    from scipy.stats import norm

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < MIN_REPLICATES or not np.isfinite(estimate):
        return float("nan"), float("nan")
    share = (np.sum(v < estimate) + 0.5 * np.sum(v == estimate)) / v.size
    if share <= 0 or share >= 1:
        return percentile_ci(v, alpha)
    z0 = norm.ppf(share)
    jk = np.asarray(jackknife, dtype=float)
    jk = jk[~np.isnan(jk)]
    d = jk.mean() - jk if jk.size else np.zeros(1)
    denom = 6.0 * np.sum(d**2) ** 1.5
    accel = float(np.sum(d**3) / denom) if denom > 0 else 0.0
    z = norm.ppf([alpha / 2, 1 - alpha / 2])
    q = norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    lo, hi = np.quantile(v, np.clip(q, 0.0, 1.0))
    return float(lo), float(hi)


def bootstrap_replicates(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    *,
    groups: Sequence | np.ndarray | None = None,
    required_labels: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], int]:
    """Replicate values of every metric ``statistic(idx)`` returns, and the number of skipped replicates.

    ``required_labels``: per-sample labels; replicates missing any label present in the full sample are skipped
    (their rows hold NaN).
    """
    sampler = ClusterResampler(n, groups)
    needed = np.unique(required_labels) if required_labels is not None else None
    rows: list[dict[str, float] | None] = []
    for idx in sampler.replicates(n_boot, seed):
        if needed is not None and required_labels is not None and np.unique(required_labels[idx]).size < needed.size:
            rows.append(None)
            continue
        rows.append(statistic(idx))
    names = next((list(r) for r in rows if r is not None), [])
    values = {m: np.array([np.nan if r is None else r.get(m, np.nan) for r in rows], dtype=float) for m in names}
    return values, sum(r is None for r in rows)


def _summarise(estimate: dict[str, float], values: dict[str, np.ndarray], jack: dict[str, np.ndarray], n_boot: int,
               alpha: float, interval: str) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for name, est in estimate.items():
        v = values.get(name, np.full(int(n_boot), np.nan))
        lo, hi = (bca_ci(v, est, jack.get(name, np.zeros(0)), alpha) if interval == "bca"
                  else percentile_ci(v, alpha))
        used = int((~np.isnan(v)).sum())
        out[name] = {"estimate": float(est), "ci_lo": lo, "ci_hi": hi, "n_boot_used": used,
                     "n_boot_skipped": int(n_boot) - used}
    return out


def _check_interval(interval: str) -> None:
    if interval not in ("percentile", "bca"):
        raise ValueError(f"interval must be 'percentile' or 'bca', got {interval!r}")


def bootstrap_metrics(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    *,
    groups: Sequence | np.ndarray | None = None,
    required_labels: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    interval: str = "percentile",
) -> dict[str, dict[str, float | int]]:
    """Point estimate and CI (``"percentile"`` or ``"bca"``) of every metric that ``statistic(indices)`` returns.

    ``statistic`` maps an index array into the sample to ``{metric: value}``; it is called once on
    ``arange(n)`` for the estimate, once per replicate, and for BCa once per patient (jackknife).
    """
    _check_interval(interval)
    estimate = statistic(np.arange(n))
    values, _ = bootstrap_replicates(statistic, n, groups=groups, required_labels=required_labels,
                                     n_boot=n_boot, seed=seed)
    jack = jackknife_values(statistic, n, groups) if interval == "bca" and n_boot > 0 else {}
    return _summarise(estimate, values, jack, n_boot, alpha, interval)


def bootstrap_weighted(
    batch_statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
    n: int,
    *,
    groups: Sequence | np.ndarray | None = None,
    required_labels: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    interval: str = "percentile",
) -> dict[str, dict[str, float | int]]:
    """:func:`bootstrap_metrics` for a vectorised statistic: ``batch_statistic(W)`` maps a (B, n) matrix of image
    weights (draw counts) to ``{metric: (B,) values}``. Same replicates, skips and intervals, far fewer calls."""
    _check_interval(interval)
    estimate = {m: float(v[0]) for m, v in batch_statistic(np.ones((1, n))).items()}
    sampler = ClusterResampler(n, groups)
    if required_labels is not None:
        labels = np.unique(required_labels, return_inverse=True)[1]
        onehot = (labels[:, None] == np.arange(labels.max() + 1 if n else 0)).astype(float)
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in estimate}
    for w in sampler.multiplicities(n_boot, seed):
        res = batch_statistic(w)
        ok = np.ones(w.shape[0], dtype=bool)
        if required_labels is not None:
            ok = ((w @ onehot) > 0).all(axis=1)  # replicate holds every class of the full sample
        for m in estimate:
            chunks[m].append(np.where(ok, res[m], np.nan))
    values = {m: np.concatenate(v) if v else np.zeros(0) for m, v in chunks.items()}
    jack: dict[str, np.ndarray] = {}
    if interval == "bca" and n_boot > 0:
        codes = (np.arange(n) if groups is None
                 else np.unique(np.asarray(groups).astype(str), return_inverse=True)[1])
        n_groups = int(codes.max()) + 1 if n else 0
        parts: dict[str, list[np.ndarray]] = {m: [] for m in estimate}
        for start in range(0, n_groups, 250):  # (250, n) leave-one-patient-out weight blocks
            block = (codes[None, :] != np.arange(start, min(start + 250, n_groups))[:, None]).astype(float)
            for m, v in batch_statistic(block).items():
                parts[m].append(np.asarray(v, dtype=float))
        jack = {m: np.concatenate(v) for m, v in parts.items() if v}
    return _summarise(estimate, values, jack, n_boot, alpha, interval)
