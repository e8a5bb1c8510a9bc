"""`breastclip backbones` (the registry, and what works offline now) and `breastclip embed` (fill the cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from breastclip.cli.errors import fail


def backbones(
    json_out: bool = typer.Option(False, "--json", help="Print the table as JSON lines."),
) -> None:
    """List registered backbones and whether each can be built offline right now (no download is attempted)."""
    from breastclip import RESEARCH_ONLY
    from breastclip.backbones import DEFAULT_BACKBONE, list_backbones, offline_status

    rows: list[dict[str, Any]] = []
    for e in list_backbones():
        ok, why = offline_status(e)
        text = "aligned" if e.has_text and e.text_aligned else ("separate space" if e.has_text else "none")
        rows.append({"name": e.name, "family": e.family, "image_size": e.image_size, "embed_dim": e.embed_dim,
                     "text": text, "offline": ok, "detail": why, "licence": e.licence, "description": e.description,
                     "default": e.name == DEFAULT_BACKBONE})
    if json_out:
        import json

        for r in rows:
            typer.echo(json.dumps(r))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="breastclip backbones", caption=f"also: hf:<Hugging Face CLIP id>, local:<checkpoint>. "
                                                          f"{RESEARCH_ONLY}")
    for col in ("name", "family", "size", "dim", "text", "offline now", "licence"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        offline = "[green]yes[/green]" if r["offline"] else f"[red]no[/red]: {r['detail']}"
        table.add_row(name, r["family"], str(r["image_size"]), str(r["embed_dim"]), r["text"], offline, r["licence"])
    Console(width=200).print(table)


def embed(
    manifest: Path = typer.Argument(..., exists=True, dir_okay=False, help="Manifest CSV (with its JSON sidecar)."),
    backbone: str = typer.Option("clip-vit-b32", "--backbone", "-b", help="Registry name, hf:<id> or local:<path>."),
    architecture: str | None = typer.Option(None, help="open_clip architecture of a local:<file> checkpoint."),
    cache_dir: Path | None = typer.Option(None, help="Cache root (default $BREASTCLIP_CACHE or ~/.cache/breastclip); embeddings go to ROOT/embeddings."),
    batch_size: int | None = typer.Option(None, min=1, help="Images per batch (default: automatic)."),
    num_workers: int | None = typer.Option(None, min=0, help="Decoding worker processes (default: automatic)."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 (default: CUDA when available)."),
    precision: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16, int8 (CPU)."),
    pixel_cache: str = typer.Option("auto", help="Keep resized uint8 copies: auto (large/DICOM), always, never."),
    out: Path | None = typer.Option(None, help="Also write X and ids to this .npz file."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept image paths outside the "
                                            "manifest's data folder (they are reported)."),
) -> None:
    """Embed every image of a manifest into the content-addressed cache (resumable; torchrun-aware)."""
    from breastclip import RESEARCH_ONLY
    from breastclip.backbones import BackboneUnavailable, embed_manifest
    from breastclip.data.manifest import Manifest
    from breastclip.distributed import launched_by_torchrun

    if out is not None and out.suffix != ".npz":
        raise typer.BadParameter("--out must end in .npz", param_hint="--out")
    if out is not None and out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists; pass --overwrite to replace it", param_hint="--out")
    overrides = {"architecture": architecture} if architecture else {}
    try:
        m = Manifest.from_csv(manifest).validate(check_files=False, allow_outside_root=allow_outside_root)
        res = embed_manifest(m, backbone, cache_dir=cache_dir, batch_size=batch_size, num_workers=num_workers,
                             device=device, precision=precision, pixel_cache=pixel_cache, progress=progress,
                             **overrides)
    except (BackboneUnavailable, KeyError, ValueError, FileNotFoundError) as e:
        fail(str(e.args[0] if e.args else e))
    import os

    if launched_by_torchrun() and os.environ.get("RANK", "0") != "0":
        return
    if out is not None:
        import io

        import numpy as np

        from breastclip.atomic import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, X=res.X, ids=np.array(res.ids, dtype=str), backbone=np.array(res.backbone))
        atomic_write_bytes(out, buf.getvalue())
    typer.echo(f"{len(res.ids)} of {len(m)} images embedded with {res.backbone} "
               f"(d={res.X.shape[1]}): {res.n_computed} computed, {res.n_cached} from cache, "
               f"{res.seconds:.1f} s ({res.images_per_second:,.1f} img/s)")
    typer.echo(f"cache: {res.cache_dir}" + (f"; wrote {out}" if out else ""))
    if res.failures:
        typer.echo(f"{len(res.failures)} images failed and were skipped:", err=True)
        for i, path, problem in res.failures[:20]:
            typer.echo(f"  {i}: {path}: {problem}", err=True)
        if len(res.failures) > 20:
            typer.echo(f"  ... and {len(res.failures) - 20} more", err=True)
    typer.echo(RESEARCH_ONLY)
    if not res.ids and len(m):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("backbones")(backbones)
    app.command("embed")(embed)
