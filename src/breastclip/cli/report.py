"""``breastclip report``: a predictions table (CSV) in, the full report bundle out.

Thin: reads the files, calls :func:`breastclip.report.write_report` with the flags as keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

PRED_DTYPES = {"id": str, "patient_id": str, "split": str, "method": str, "y_true": str, "y_pred": str}


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the main app."""
    app.command("report")(report)


def _json(path: Path | None, what: str):
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"{path}: cannot read the {what} JSON ({exc})") from exc


def report(
    predictions: Path = typer.Argument(..., exists=True, dir_okay=False,
                                       help="Predictions table CSV (id, patient_id, split, method, y_true, y_pred, "
                                            "p_<class>...)."),
    out_dir: Path = typer.Argument(..., file_okay=False, help="Folder to write the report bundle into."),
    manifest: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                         help="Manifest CSV (Manifest.to_csv): metadata for subgroups, counts of "
                                              "every split, leak audit, thumbnails of errors."),
    histories: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                          help="JSON {method: [{epoch, train_loss, val_loss}, ...]}."),
    run_info: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                         help="JSON with dataset, backbone, head, seed, config, ... for the report."),
    dataset_name: str | None = typer.Option(None, help="Data set name shown in the report."),
    title: str | None = typer.Option(None, help="Report title."),
    positive_class: str | None = typer.Option(None, help="Class for operating points (default: malignant-like)."),
    operating_policy: str = typer.Option("youden", help="Threshold rule shown in the summary and leaderboard."),
    n_boot: int = typer.Option(1000, min=0, help="Bootstrap replicates for confidence intervals."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    min_group_size: int = typer.Option(20, min=1, help="Smallest subgroup that gets metrics."),
    audit: bool = typer.Option(True, "--audit/--no-audit",
                               help="Run the leak audit on the manifest's image files (with --manifest)."),
    overwrite: bool = typer.Option(False, help="Replace an existing report in OUT_DIR."),
) -> None:
    """Write predictions.csv, metrics.json, 300-dpi figures, report.docx, a self-contained report.html and
    MODEL_CARD.md. Research use only, not for diagnosis."""
    import pandas as pd
    from rich.console import Console

    from breastclip import RESEARCH_ONLY
    from breastclip.report import write_report

    console = Console(stderr=True)
    try:
        pred = pd.read_csv(predictions, dtype=PRED_DTYPES, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise typer.BadParameter(f"{predictions}: cannot read the predictions CSV ({exc})") from exc
    metadata = image_path = leak = None
    if manifest is not None:
        from breastclip.data.manifest import Manifest

        m = Manifest.from_csv(manifest)  # with its root: leak audit and error thumbnails
        metadata, image_path = m.df, m.image_lookup()
        if audit and (m.df["split"].astype(str) != "").any():
            from breastclip.data.splits import audit_leaks

            leak = audit_leaks(m).to_dict()
    try:
        with console.status("Evaluating methods and drawing figures..."):
            paths = write_report(out_dir, predictions=pred, metadata=metadata, image_path=image_path, leak_audit=leak,
                                 histories=_json(histories, "histories"), run_info=_json(run_info, "run info"),
                                 dataset_name=dataset_name, title=title, positive_class=positive_class,
                                 operating_policy=operating_policy, n_boot=n_boot, seed=seed,
                                 min_group_size=min_group_size, overwrite=overwrite)
    except FileExistsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.echo(f"error: {predictions}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"report:      {paths.html}")
    typer.echo(f"word:        {paths.docx}")
    typer.echo(f"metrics:     {paths.metrics_json}")
    typer.echo(f"model card:  {paths.model_card}")
    typer.echo(f"figures:     {paths.figures_dir} ({paths.n_figures} figures as PNG and JPG, 300 dpi)")
    typer.echo(RESEARCH_ONLY)
