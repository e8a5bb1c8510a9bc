"""``breastclip evaluate`` and ``breastclip compare``: the evaluation layer on a predictions CSV.

Thin: ``evaluate`` calls :func:`breastclip.evaluation.evaluate_predictions` and writes ``Evaluation.to_dict()`` as
JSON; ``compare`` calls :func:`breastclip.evaluation.compare_methods` and writes its table as CSV. Existing output
files are never overwritten without ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import fail

TEXT_COLUMNS = {"id": str, "patient_id": str, "split": str, "method": str, "y_true": str, "y_pred": str}


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` and ``compare`` commands."""
    app.command(name="evaluate")(evaluate)
    app.command(name="compare")(compare)


def _fail(message: str) -> None:
    fail(message)


def _read_predictions(path: Path):
    import pandas as pd

    if path.is_dir():  # a results folder of `breastclip run`: its predictions table, read through its RunFolder
        # lazy: the pipeline package imports torch, which `breastclip --help` must not wait for
        from breastclip.pipeline.run_folder import ResultsFolderError, RunFolder

        try:
            return RunFolder(path).read_predictions()
        except ResultsFolderError as e:
            _fail(f"{path} is not a results folder with a predictions table: {e}")
    if not path.is_file():
        _fail(f"predictions file {path} does not exist")
    try:
        return pd.read_csv(path, dtype=TEXT_COLUMNS)
    except (ValueError, pd.errors.ParserError) as e:
        _fail(f"cannot read predictions file {path}: {e}")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        _fail(f"{out} exists; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)


def evaluate(
    predictions: Path = typer.Argument(..., help="Predictions table CSV (id, patient_id, split, method, y_true, "
                                                 "y_pred, p_<class>...), or a results folder of `breastclip run`."),
    out: Path = typer.Option(Path("evaluation.json"), "--out", "-o", help="JSON file to write."),
    manifest: Path | None = typer.Option(None, help="Manifest CSV whose metadata columns feed the subgroups "
                                                    "(default for a results folder: its manifest)."),
    method: str | None = typer.Option(None, help="Method to evaluate when the table holds several."),
    positive_class: str | None = typer.Option(None, help="Positive class (default: malignant/cancer, else the "
                                                          "second class of a binary problem)."),
    n_boot: int = typer.Option(1000, help="Bootstrap replicates (patients resampled when they have several "
                                          "images); 0 skips intervals."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    alpha: float = typer.Option(0.05, help="1 - confidence level of the intervals."),
    interval: str = typer.Option("percentile", help="Bootstrap interval: percentile or bca."),
    min_group_size: int = typer.Option(20, help="Smallest subgroup (images) that gets metrics."),
    policy: list[str] = typer.Option(None, "--policy", help="Threshold policy chosen on val, repeatable: youden, "
                                                            "spec>=0.90, sens>=0.90, cost=5, fixed=0.5."),
    subgroup: list[str] = typer.Option(None, "--subgroup", help="Metadata column to analyse, repeatable "
                                                                "(default: all suitable columns)."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
) -> None:
    """Metrics with CIs, operating points frozen on val, calibration, subgroups and confident errors."""
    import json

    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from breastclip import RESEARCH_ONLY
    from breastclip.evaluation import evaluate_predictions
    from breastclip.evaluation.thresholds import DEFAULT_POLICIES

    _check_out(out, force)
    pred = _read_predictions(predictions)
    mdf = None
    if manifest is not None:
        if not manifest.is_file():
            _fail(f"manifest file {manifest} does not exist")
        mdf = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    elif predictions.is_dir():
        from breastclip.pipeline.run_folder import ResultsFolderError, RunFolder

        try:
            mdf = RunFolder(predictions).read_manifest().df
        except ResultsFolderError as e:
            _fail(str(e))
    console = Console(stderr=True)
    try:
        with console.status(f"evaluating {predictions.name} ({n_boot} bootstrap replicates)"):
            ev = evaluate_predictions(pred, mdf, method=method, positive_class=positive_class, n_boot=n_boot,
                                      seed=seed, alpha=alpha, interval=interval, min_group_size=min_group_size,
                                      threshold_policies=tuple(policy) if policy else DEFAULT_POLICIES,
                                      subgroup_columns=list(subgroup) if subgroup else None)
    except ValueError as e:
        _fail(f"{predictions}: {e}")
    out.write_text(json.dumps(ev.to_dict(), indent=2, allow_nan=False))
    level = round(100 * (1 - alpha))
    table = Table(title=f"{ev.method} on test ({ev.n['test']['images']} images, {ev.n['test']['patients']} "
                        f"patients; {level}% CI, bootstrap by {ev.bootstrap['unit']})")
    table.add_column("metric")
    table.add_column("estimate", justify="right")
    table.add_column(f"{level}% CI", justify="right")
    for m, v in ev.headline.items():
        ci = "n/a" if v["ci_lo"] != v["ci_lo"] else f"{v['ci_lo']:.3f} - {v['ci_hi']:.3f}"
        table.add_row(m, f"{v['estimate']:.3f}", ci)
    console.print(table)
    if len(ev.operating_points):
        ops = Table(title=f"Operating points for '{ev.positive_class}' (thresholds chosen on val, applied to test)")
        for col in ("policy", "threshold", "sensitivity", "specificity", "fp", "fn"):
            ops.add_column(col, justify="right")
        for _, r in ev.operating_points.iterrows():
            ops.add_row(str(r["policy"]), f"{r['threshold']:.3f}", f"{r['sensitivity']:.3f}",
                        f"{r['specificity']:.3f}", str(r["fp"]), str(r["fn"]))
        console.print(ops)
    for note in ev.notes:
        console.print(f"note: {note}")
    console.print(RESEARCH_ONLY)
    typer.echo(str(out))


def compare(
    predictions: Path = typer.Argument(..., help="Predictions table CSV holding two or more methods."),
    out: Path = typer.Option(Path("comparisons.csv"), "--out", "-o", help="CSV file to write."),
    baseline: str | None = typer.Option(None, help="Reference method (default: the highest ROC AUC)."),
    split: str = typer.Option("test", help="Split to compare on."),
    positive_class: str | None = typer.Option(None, help="Positive class of a binary problem."),
    n_boot: int = typer.Option(1000, help="Paired bootstrap replicates."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    alpha: float = typer.Option(0.05, help="1 - confidence level of the intervals."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
) -> None:
    """Paired comparison of every method against a baseline (DeLong for AUC, paired bootstrap otherwise)."""
    from breastclip import RESEARCH_ONLY
    from breastclip.evaluation import compare_methods

    _check_out(out, force)
    pred = _read_predictions(predictions)
    try:
        table = compare_methods(pred, baseline_method=baseline, split=split, positive_class=positive_class,
                                n_boot=n_boot, seed=seed, alpha=alpha)
    except ValueError as e:
        _fail(f"{predictions}: {e}")
    table.to_csv(out, index=False)
    auc = table[table["metric"] == "roc_auc"]
    for _, r in auc.iterrows():
        typer.echo(f"{r['method']} vs {r['baseline']}: AUC difference {r['diff']:+.3f} "
                   f"[{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}], p = {r['p_value']:.3g} ({r['test']})", err=True)
    typer.echo(RESEARCH_ONLY, err=True)
    typer.echo(str(out))
