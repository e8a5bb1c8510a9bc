"""``breastclip data synthetic`` (write the synthetic lesion set) and ``breastclip data check-images`` (decode every
image, report the ones that fail). Thin wrappers over :mod:`breastclip.data.synthetic` and
:mod:`breastclip.data.images`; they join the ``data`` command group.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from breastclip.cli.errors import fail

from .data import data_app


def register(app: typer.Typer) -> None:
    """Add ``synthetic`` and ``check-images`` to the ``data`` group (registered by ``breastclip.cli.data``)."""
    data_app.command("synthetic")(synthetic)
    data_app.command("check-images")(check_images)


def synthetic(
    output: Path = typer.Argument(..., help="Folder to write (class folders + labels.csv); never overwritten."),
    patients: int = typer.Option(24, "--patients", help="Number of patients (balanced between the classes)."),
    views: int = typer.Option(2, "--views", help="Images per patient (CC, MLO, ...)."),
    size: int = typer.Option(64, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    normal: bool = typer.Option(False, "--normal", help="Add a 'normal' class (no lesion), as in BUSI."),
    difficulty: float = typer.Option(0.0, "--difficulty", help="0 clear .. 1 indistinguishable malignant cues."),
    masks: bool = typer.Option(False, "--masks", help="Also write <image>_mask.png lesion masks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files that differ from what would be written."),
) -> None:
    """Write the deterministic synthetic lesion set (benign round vs malignant spiculated) for smoke runs."""
    from breastclip import RESEARCH_ONLY
    from breastclip.data.synthetic import SYNTHETIC_CLASSES, make_synthetic

    classes = ("normal", *SYNTHETIC_CLASSES) if normal else SYNTHETIC_CLASSES
    try:
        m = make_synthetic(output, n_patients=patients, images_per_patient=views, size=size, seed=seed,
                           masks=masks, overwrite=overwrite, classes=classes, difficulty=difficulty)
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    per_class = m.df.groupby("label")["patient_id"].nunique().reindex(m.classes)
    counts = ", ".join(f"{c} {n}" for c, n in per_class.items())
    typer.echo(f"wrote {len(m)} images of {m.df['patient_id'].nunique()} patients ({counts}) to {output}")
    typer.echo(f"labels: {output / 'labels.csv'} (synthetic data, not real patients)")
    typer.echo(RESEARCH_ONLY)


def check_images(
    sources: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    size: int = typer.Option(0, "--size", help="Decode through the resized fast path at this size (0: full)."),
    workers: int = typer.Option(2, "--workers", help="Decoding threads."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the failure report as JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Decode every image and list the files that fail (corrupt, truncated, empty, not an image, ...).

    Exit code 1 when any file fails, so it can gate a pipeline.
    """
    from breastclip import RESEARCH_ONLY
    from breastclip.data.images import format_failures, load_images
    from breastclip.data.sources._files import image_files

    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += image_files(src)
        else:
            files.append(src)
    if not files:
        fail("no image files found in " + ", ".join(map(str, sources)))
    failures = _decode_with_progress(files, size or None, workers, load_images, quiet=as_json)
    report = {"checked": len(files), "failed": len(failures), "failures": [f.to_dict() for f in failures],
              "notice": RESEARCH_ONLY}
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"checked {len(files)} image(s): {len(files) - len(failures)} decoded")
        if failures:
            typer.echo(format_failures(failures, limit=50))
        typer.echo(RESEARCH_ONLY)
    if failures:
        raise typer.Exit(1)


def _decode_with_progress(files, size, workers, load_images, *, quiet: bool):
    """Decode in chunks so a progress bar can move; arrays are dropped as soon as they are checked."""
    from rich.progress import Progress

    failures = []
    chunk = 64
    with Progress(transient=True, disable=quiet or len(files) < 200) as progress:
        task = progress.add_task("decoding", total=len(files))
        for start in range(0, len(files), chunk):
            part = files[start:start + chunk]
            _, fails = load_images(part, size=size, workers=workers)
            failures += fails
            progress.advance(task, len(part))
    return failures
