"""``breastclip data download``: fetch a public data set (Kaggle through kagglehub, BreastMNIST through medmnist)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from breastclip.cli.data import data_app

    data_app.command(name="download")(download)


def download(
    name: str = typer.Argument("", help="Data set: cbis-ddsm, breakhis, busi, mediclip, dbt, breastmnist, or a "
                               "Kaggle slug OWNER/DATASET. Leave empty (or --list) to list them."),
    cache_dir: Path | None = typer.Option(None, "--dir", help="Download folder (default: "
                                          "datasets/ under the cache root, $BREASTCLIP_CACHE)."),
    slug: str = typer.Option("", "--slug", help="Use this Kaggle copy instead of the default one."),
    size: int | None = typer.Option(None, "--size", help="MedMNIST resolution: 28, 64, 128 or 224."),
    force: bool = typer.Option(False, "--force", help="Download again even if a finished copy is there."),
    list_: bool = typer.Option(False, "--list", help="List the known data sets."),
) -> None:
    """Download a data set with your own Kaggle credentials (or medmnist), then inspect it with `data inspect`."""
    from breastclip.data.download import DATASETS, DownloadError, download_dataset

    if list_ or not name:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Data sets `breastclip data download` knows")
        for col in ("name", "from", "source", "reader", "licence"):
            table.add_column(col)
        for d in DATASETS.values():
            table.add_row(d.name, d.kind, d.slug or "(pass --slug)", d.reader, d.licence)
        Console().print(table)
        return
    try:
        path = download_dataset(name, cache_dir=cache_dir, slug=slug or None, force=force, size=size)
    except DownloadError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    fmt = DATASETS[name].reader if name in DATASETS else ""
    typer.echo(f"downloaded to {path}")
    typer.echo(f"inspect it: breastclip data inspect {path}" + (f" --format {fmt}" if fmt else ""))
