"""``breastclip predict``: classify new images with a finished run.

Order of work for every image: decode and embed (the run's backbone, through the same embedding cache) ->
medical-image gate (the run's out-of-distribution check against its training embeddings, plus the zero-shot
medical vs non-medical filter when the backbone has an aligned text tower) -> probabilities from the chosen
method -> decision with the operating point the run froze on its validation split. Images the gate rejects get no
probabilities. One CSV out (never overwriting a file), with a JSON sidecar saying what produced it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from breastclip import RESEARCH_ONLY
from breastclip.atomic import atomic_write_text
from breastclip.backbones import embed_manifest
from breastclip.backbones.preprocess import pixel_options
from breastclip.config import ConfigError, ExperimentConfig
from breastclip.data.images import IMAGE_SUFFIXES, load_image, pixel_size
from breastclip.data.manifest import Manifest
from breastclip.data.sources._files import image_files
from breastclip.evaluation.leaderboard import NO_METHOD_LEARNED, is_seeded, selected_method, threshold_text
from breastclip.heads import load_head
from breastclip.method_registry import Inputs, MethodKind, method_kind
from breastclip.pipeline.explain_step import overlays_for_predict
from breastclip.pipeline.methods import align_proba
from breastclip.pipeline.run_folder import ResultsFolderError, RunFolder
from breastclip.portable import portable_path
from breastclip.retrieval import load_reference, nearest


class PredictError(ValueError):
    """The run or the inputs cannot be used for prediction; the message says which and why."""


@dataclass
class PredictResult:
    table: pd.DataFrame
    csv_path: Path
    method: str
    n_rejected: int
    n_failed: int


@dataclass
class RunArtifacts:
    """What ``predict`` needs from a results folder (read through its :class:`RunFolder`)."""

    folder: RunFolder
    config: ExperimentConfig
    method: str
    method_info: dict
    classes: list[str]
    operating_point: dict
    chosen_by: str = ""  # how the method was chosen: the run's selection (e.g. "val_roc_auc") or "--method"

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def kind(self) -> MethodKind:
        """What the method needs and how its saved model is loaded (the method registry)."""
        try:
            return method_kind(str(self.method_info.get("head")))
        except ConfigError as e:
            raise PredictError(f"{self.folder.method_dir(self.method) / RunFolder.METHOD_RECORD}: {e}") from None


def collect_images(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for image files (sorted); missing paths are an error."""
    out: list[Path] = []
    missing = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            out.extend(image_files(p))
        elif p.is_file():
            out.append(p)
        else:
            missing.append(str(p))
    if missing:
        raise PredictError(f"{len(missing)} input path(s) do not exist: {missing[:10]}")
    if not out:
        raise PredictError(f"no image files found in {[str(i) for i in items]} (looked for {sorted(IMAGE_SUFFIXES)})")
    return list(dict.fromkeys(p.resolve() for p in out))


def load_run(run_dir: str | Path, method: str | None = None) -> RunArtifacts:
    """Read a finished run's config, leaderboard and the chosen method's frozen operating point."""
    folder = RunFolder(Path(run_dir).expanduser().resolve())
    state = folder.read_state()
    if state is None or not (folder / RunFolder.CONFIG).is_file():
        raise PredictError(f"{folder.path} is not a breastclip results folder (no {RunFolder.CONFIG} / "
                           f"{RunFolder.STATE})")
    if not state.get("complete"):
        raise PredictError(f"the run in {folder.path} did not finish; run `breastclip run` on its config again to "
                           f"resume it")
    try:
        cfg = folder.read_config()
        board = folder.read_leaderboard()
        methods = board["method"].astype(str).tolist()
        if method is None:
            if not methods:
                raise PredictError(f"{folder / RunFolder.LEADERBOARD} lists no method")
            if "selected" not in board.columns:
                raise PredictError(f"{folder / RunFolder.LEADERBOARD} has no 'selected' column (the run predates "
                                   f"selection on validation); pass --method NAME (one of {methods})")
            method = selected_method(board)
            if method is None:
                raise PredictError(f"{NO_METHOD_LEARNED} in the run {folder.path.name}: every method's status in "
                                   f"{RunFolder.LEADERBOARD} flags it, so none is selected. Pass --method NAME (one "
                                   f"of {methods}) to use one anyway")
            chosen_by = f"selected by the run ({board['selection_metric'].iloc[0]}, never the test split)"
            if is_seeded(board):  # the method was chosen by its mean over seeds; this is one seed's fitted model
                row = board[board["method"].astype(str) == method].iloc[0]
                chosen_by = (f"selected by the run: {row['base_method']} by its mean "
                             f"{board['selection_metric'].iloc[0]} over {int(row['n_seeds'])} seeds (never the test "
                             f"split); its deployed model {method} is the master seed's fit")
        elif method not in methods:
            raise PredictError(f"method {method!r} is not in this run; its methods are {methods}")
        else:
            chosen_by = "--method"
        info = folder.read_method_record(method)
        backbone = info.get("backbone")
        if backbone and backbone not in cfg.backbones:  # a results folder is data: check it agrees with itself
            raise PredictError(f"{folder.method_dir(method) / RunFolder.METHOD_RECORD}: backbone {backbone!r} is "
                               f"not one of the run's backbones {list(cfg.backbones)}; the folder is inconsistent")
        op = folder.read_operating_point(method)
        classes = folder.read_classes()
    except ResultsFolderError as e:
        raise PredictError(str(e)) from None
    return RunArtifacts(folder, cfg, method, info, classes, op, chosen_by)


def predict_images(
    images: Sequence[str | Path],
    run_dir: str | Path,
    *,
    method: str | None = None,
    output: str | Path | None = None,
    gradcam: bool = False,
    gate: bool = True,
    neighbours: int = 0,
    console: bool = False,
) -> PredictResult:
    """Gate, classify and decide for every image; write the CSV and return the table.

    Rejected images say which check rejected them, their score against its threshold and what it means
    (``gate_check``, ``gate_explanation``). ``gate=False`` (``--no-gate``) still runs the checks when the run has
    them but rejects nothing: the rows the gate would have rejected say so (``gate_overridden``), and the sidecar
    JSON records the override. ``neighbours=k`` adds the k most similar training images of each image
    (``neighbour_<r>_id / _label / _similarity`` columns and ``<csv>_neighbours.csv``)."""
    run = load_run(run_dir, method)
    paths = collect_images(images)
    out_csv = _output_path(run, output)
    kind = run.kind
    backbone = run.method_info.get("backbone") or _gate_backbone(run)
    table = pd.DataFrame({"image": [str(p) for p in paths], "status": "ok", "error": ""})
    X, ok = _embed(paths, run, backbone, table) if backbone else (None, np.ones(len(paths), bool))
    would_reject = 0
    if gate and backbone and X is not None:
        _apply_gate(run, backbone, X, ok, table)
        table["gate"] = "applied"
    elif not gate:
        would_reject = _override_gate(run, backbone, X, ok, table)
    keep = ok & (table["status"].to_numpy() == "ok")
    proba = np.full((len(paths), len(run.classes)), np.nan)
    if keep.any():
        model = kind.load(run.folder.model_dir(run.method))
        if kind.inputs is Inputs.IMAGES:  # trained end to end: the decoded images themselves
            decoded = [load_image(paths[i]) for i in np.flatnonzero(keep)]
            proba[keep] = align_proba(model.predict_proba(decoded), [str(c) for c in model.classes], run.classes)
        else:
            if X is None:
                raise PredictError(f"method {run.method!r} works on embeddings but names no backbone")
            proba[keep] = align_proba(model.predict_proba(X[keep[ok]]), [str(c) for c in model.classes_],
                                      run.classes)
    for j, c in enumerate(run.classes):
        table[f"p_{c}"] = proba[:, j]
    _decide(run, proba, keep, table)
    table.insert(1, "method", run.method)
    if gradcam and keep.any():
        _gradcam(run, paths, keep, table, out_csv.parent / (out_csv.stem + "_gradcam"))
    if neighbours > 0 and backbone and X is not None:
        _neighbours(run, backbone, X, ok, table, neighbours, out_csv.parent / (out_csv.stem + "_neighbours.csv"))
    atomic_write_text(out_csv, table.to_csv(index=False))
    # the run as seen from the sidecar's folder (never a user's home path: predictions get shared)
    sidecar = {"run": portable_path(run.run_dir, out_csv.parent), "method": run.method, "method_chosen_by": run.chosen_by,
               "backbone": backbone, "classes": run.classes, "operating_point": run.operating_point, "gate": gate,
               **({} if gate else {"gate_overridden": "--no-gate: the medical-image gate was run but not applied",
                                   "gate_would_have_rejected": would_reject}),
               "neighbours": int(neighbours), "created": datetime.now().isoformat(),
               "notice": RESEARCH_ONLY}
    atomic_write_text(out_csv.with_suffix(".json"), json.dumps(sidecar, indent=2, default=str))
    n_rej = int((table["status"] == "rejected").sum())
    n_fail = int((table["status"] == "error").sum())
    if console:
        _print(table, run, out_csv, n_rej, n_fail)
    return PredictResult(table, out_csv, run.method, n_rej, n_fail)


# ---- steps --------------------------------------------------------------------------------------------------
def _output_path(run: RunArtifacts, output: str | Path | None) -> Path:
    if output is None:
        return run.folder.new_predict_csv()
    out = Path(output).expanduser()
    if out.exists():
        raise PredictError(f"{out} exists; choose another --output (predict never overwrites a file)")
    return out


def _gate_backbone(run: RunArtifacts) -> str | None:
    """For the CNN baseline the gate uses the run's first backbone (its OOD check is saved per backbone)."""
    bbs = list(run.config.backbones)
    return bbs[0] if bbs else None


def _embed(paths: list[Path], run: RunArtifacts, backbone: str, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    records = [{"id": f"predict:{i}", "image": str(p), "label": "unknown"} for i, p in enumerate(paths)]
    manifest = Manifest.from_records(records, Path("/"), name="predict", source="predict")
    # the run's pixel preprocessing (breast crop) and tile view must be the ones its heads were trained on
    opts = run.config.embed.options
    pixels = {**pixel_options(opts), **({"tiles": opts["tiles"]} if "tiles" in opts else {})}
    # the user's own cache root, never a path named inside the results folder (it may come from someone else)
    res = embed_manifest(manifest, backbone, cache_dir=None, progress=False, **pixels,
                         **({"device": run.config.embed.device} if run.config.embed.device else {}))
    pos = {i: k for k, i in enumerate(res.ids)}
    ok = np.array([f"predict:{i}" in pos for i in range(len(paths))])
    for image_id, _path, problem in res.failures:
        table.loc[int(image_id.split(":")[1]), ["status", "error"]] = ["error", problem]
    order = [pos[f"predict:{i}"] for i in range(len(paths)) if ok[i]]
    return np.asarray(res.X)[order], ok


OOD_CHECK = "out-of-distribution check"
MEDICAL_CHECK = "medical-image filter"


def _training_words(run: RunArtifacts) -> tuple[str, tuple[int, int] | None]:
    info = run.folder.read_json_or(f"{RunFolder.GATE}/{RunFolder.GATE_SUMMARY}", {}).get("training_images") or {}
    size = tuple(info["median_size"]) if info.get("median_size") else None
    what = f"{info.get('dataset', 'the run')} images ({', '.join(info.get('classes') or run.classes)})"
    return (f"the run was trained on {size[0]}x{size[1]}-px {what}" if size else f"the run was trained on {what}",
            size)


def _gate_checks(run: RunArtifacts, backbone: str, X: np.ndarray, ok: np.ndarray, paths: list[str],
                 table: pd.DataFrame) -> np.ndarray:
    """Run the gate's checks; fill the score / threshold / check / explanation columns; return who fails."""
    gdir = run.folder.gate_dir(backbone)
    ood = load_head(gdir / "ood")
    idx = np.flatnonzero(ok)
    score = np.full(len(ok), np.nan)
    score[idx] = ood.ood_score(X)
    flag = np.zeros(len(ok), bool)
    flag[idx] = score[idx] > ood.threshold_
    table["ood_score"] = score
    table["ood_threshold"] = float(ood.threshold_)
    table["ood_flag"] = flag
    trained_on, train_size = _training_words(run)
    checks: list[list[str]] = [[] for _ in range(len(ok))]
    explain: list[list[str]] = [[] for _ in range(len(ok))]
    quantile = getattr(ood, "quantile", None)
    for i in np.flatnonzero(flag):
        size = pixel_size(paths[i])
        this = f"; this image is {size[0]}x{size[1]} px" if size and train_size and size != train_size else ""
        checks[i].append(OOD_CHECK)
        explain[i].append(f"OOD score {score[i]:.3f} > threshold {ood.threshold_:.3f}"
                          + (f" (the {quantile:.0%} quantile of the run's validation images)" if quantile else "")
                          + f": unlike the training images: {trained_on}{this}")
    reasons = np.where(flag, "unlike the run's training images (out-of-distribution)", "")
    if (gdir / "medical").is_dir():
        med = load_head(gdir / "medical")
        m = np.full(len(ok), np.nan)
        m[idx] = med.medical_score(X)
        not_med = np.zeros(len(ok), bool)
        not_med[idx] = m[idx] < float(med.threshold)
        table["medical_score"] = m
        table["medical_flag"] = not_med
        for i in np.flatnonzero(not_med):
            checks[i].append(MEDICAL_CHECK)
            explain[i].append(f"medical score {m[i]:.3f} < threshold {float(med.threshold):.3f}: the zero-shot "
                              "medical vs non-medical prompts find it more like a non-medical image")
        reasons = np.where(not_med, np.where(flag, "not a medical image; " + reasons, "not a medical image"), reasons)
        flag = flag | not_med
    table["gate_check"] = [" + ".join(c) for c in checks]
    table["gate_explanation"] = ["; ".join(e) for e in explain]
    table["_gate_reason"] = reasons
    return flag & ok


def _apply_gate(run: RunArtifacts, backbone: str, X: np.ndarray, ok: np.ndarray, table: pd.DataFrame) -> None:
    gdir = run.folder.gate_dir(backbone)
    if not (gdir / "ood").is_dir():
        raise PredictError(f"the run has no medical-image gate for {backbone} ({gdir}); it was run with "
                           f"gate.ood = false. Re-run it with the gate, or pass --no-gate to go on without it")
    rejected = _gate_checks(run, backbone, X, ok, list(table["image"]), table)
    table.loc[rejected, "status"] = "rejected"
    table.loc[rejected, "error"] = table.loc[rejected, "_gate_reason"]
    table.drop(columns="_gate_reason", inplace=True)


def _override_gate(run: RunArtifacts, backbone: str | None, X: np.ndarray | None, ok: np.ndarray,
                   table: pd.DataFrame) -> int:
    """``--no-gate``: the checks run when the run has them, nothing is rejected, the override is recorded."""
    if not backbone or X is None or not (run.folder.gate_dir(backbone) / "ood").is_dir():
        table["gate"] = "not applied (--no-gate; the run has no gate)"
        return 0
    would = _gate_checks(run, backbone, X, ok, list(table["image"]), table)
    table.drop(columns="_gate_reason", inplace=True)
    table["gate"] = "overridden (--no-gate)"
    table["gate_overridden"] = would
    table.loc[would, "gate_explanation"] = "would have been rejected: " + table.loc[would, "gate_explanation"]
    return int(would.sum())


def _neighbours(run: RunArtifacts, backbone: str, X: np.ndarray, ok: np.ndarray, table: pd.DataFrame, k: int,
                path: Path) -> None:
    """The k most similar training images of each embedded image: columns in the table, a long CSV beside it."""
    try:
        ref = load_reference(run.folder.gate_dir(backbone))
    except FileNotFoundError as e:
        raise PredictError(f"--neighbours: {e}") from None
    found = nearest(X, ref, k)
    rows = np.flatnonzero(ok)
    found.insert(0, "image", [table.at[int(rows[q]), "image"] for q in found.pop("query")])
    for r in range(1, min(k, len(ref.ids)) + 1):
        part = found[found["rank"] == r].set_index("image")
        for col in ("id", "label", "similarity"):
            table[f"neighbour_{r}_{col}"] = table["image"].map(part[col])
    found.insert(1, "backbone", backbone)
    atomic_write_text(path, found.to_csv(index=False))


def _decide(run: RunArtifacts, proba: np.ndarray, keep: np.ndarray, table: pd.DataFrame) -> None:
    """The decision for each image, with the operating point the run froze on validation.

    Binary and multi-class alike: when the method has a frozen threshold for a positive class, an image is that
    class when ``p_<positive> >= threshold``, else the most probable of the other classes (one-vs-rest, the rule
    the run evaluated its operating point with). Without one (no positive class, no validation split, or the
    policy was not attainable on validation) the decision is the most probable class, and ``policy`` says why.
    """
    op = run.operating_point or {}
    thr, pos = op.get("threshold"), op.get("positive_class")
    decision = np.array([""] * len(table), dtype=object)
    rows = np.flatnonzero(keep)
    if thr is not None and pos in run.classes:
        j = run.classes.index(pos)
        rest = proba[rows].copy()
        rest[:, j] = -np.inf
        others = np.array([run.classes[k] for k in np.argmax(rest, axis=1)], dtype=object)
        decision[rows] = np.where(proba[rows, j] >= float(thr), pos, others)
        table["threshold"] = float(thr)
        table["policy"] = op.get("policy", "")
        table["rule"] = (f"{pos} when p_{pos} >= {threshold_text(thr)} (frozen on validation), else "
                         + ("the most probable other class" if len(run.classes) > 2 else run.classes[1 - j]))
    else:
        decision[rows] = [run.classes[k] for k in np.nanargmax(proba[rows], axis=1)] if len(rows) else []
        table["threshold"] = np.nan
        why = op.get("note") or "no frozen operating point for this method"
        table["policy"] = f"argmax ({why})"
        table["rule"] = "the most probable class"
    decision[table["status"].to_numpy() == "rejected"] = "rejected by the medical-image gate"
    decision[table["status"].to_numpy() == "error"] = "error"
    table["decision"] = decision


def _gradcam(run: RunArtifacts, paths: list[Path], keep: np.ndarray, table: pd.DataFrame, folder: Path) -> None:
    table["gradcam"] = ""
    written = overlays_for_predict(run, [paths[i] for i in np.flatnonzero(keep)], folder)
    for i, path in zip(np.flatnonzero(keep), written, strict=True):
        table.loc[i, "gradcam"] = str(path) if path else ""


def _print(table: pd.DataFrame, run: RunArtifacts, out_csv: Path, n_rej: int, n_fail: int) -> None:
    t = Table(title=f"breastclip predict ({run.method})", caption=RESEARCH_ONLY)
    cols = ["image", "decision"] + [f"p_{c}" for c in run.classes] + (["ood_score"] if "ood_score" in table else [])
    for c in cols:
        t.add_column(c)
    for _, r in table.head(50).iterrows():
        t.add_row(*[Path(str(r[c])).name if c == "image" else (f"{r[c]:.3f}" if isinstance(r[c], float) and
                                                               r[c] == r[c] else str(r[c] if r[c] == r[c] else ""))
                    for c in cols])
    con = Console()
    con.print(t)
    if len(table) > 50:
        con.print(f"... {len(table) - 50} more rows in the CSV")
    for _, r in table[table["status"] == "rejected"].head(10).iterrows():
        con.print(f"[yellow]rejected[/yellow] {Path(str(r['image'])).name} by the {r.get('gate_check', 'gate')}: "
                  f"{r.get('gate_explanation', r['error'])}")
    if "gate_overridden" in table and table["gate_overridden"].any():
        con.print(f"[red]--no-gate[/red]: {int(table['gate_overridden'].sum())} image(s) the gate would have "
                  "rejected were classified anyway (column gate_overridden)")
    con.print(f"{len(table)} image(s): {n_rej} rejected by the gate, {n_fail} unreadable. CSV: {out_csv}")
