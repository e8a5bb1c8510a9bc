"""``breastclip cache ls | verify | gc | clear``: the user's cache (see breastclip.user_cache), safe during runs."""

from __future__ import annotations

from pathlib import Path

import typer

cache_app = typer.Typer(help="Look after the cache (embeddings, pixels, CV fold results): list, verify, reclaim "
                        "duplicates, clear.", no_args_is_help=True)
ROOT_HELP = "Cache root (default $BREASTCLIP_CACHE or ~/.cache/breastclip)."


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@cache_app.command(name="ls")
def ls(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=ROOT_HELP),
       as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the cache folders: backbone, rows, shards, size, last written."""
    from breastclip.backbones.cache_admin import list_cache, summary_json
    from breastclip.user_cache import cache_root

    folders = list_cache(cache_dir)
    if as_json:
        typer.echo(summary_json(folders, cache_dir))
        return
    root = cache_root(cache_dir)
    typer.echo(f"cache root {root}: {len(folders)} folder(s), {_mb(sum(f.bytes for f in folders))}")
    for f in folders:
        d = f.to_dict(root)
        typer.echo(f"  {d['folder']}  {d['backbone'] or '-'}  {f.rows} rows  {f.shards} shards  {_mb(f.bytes)}  "
                   f"{d['modified']}")


@cache_app.command()
def verify(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=ROOT_HELP)) -> None:
    """Check every embedding folder and CV fold result (exit 1 when a problem is found; `clear` or a rerun rebuilds
    it)."""
    from breastclip.backbones.cache_admin import verify_cache
    from breastclip.user_cache import cache_root

    folders = verify_cache(cache_dir)
    bad = [f for f in folders if f.problems]
    root = cache_root(cache_dir)
    for f in bad:
        typer.echo(f"{f.path.relative_to(root)}: " + "; ".join(f.problems[:10]))
    typer.echo(f"{len(folders)} folder(s) checked, {len(bad)} with problems")
    if bad:
        raise typer.Exit(1)


@cache_app.command()
def gc(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=ROOT_HELP)) -> None:
    """Reclaim duplicate shards (parallel runs embedding the same images) and old orphans; every row is kept."""
    from breastclip.backbones.cache_admin import gc_cache

    r = gc_cache(cache_dir)
    typer.echo(f"removed {r.shards_removed} duplicate shard(s) and {r.orphans_removed} orphan file(s), "
               f"{_mb(r.bytes_freed)} freed")


@cache_app.command()
def clear(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=ROOT_HELP),
          busy_minutes: float = typer.Option(10, help="Spare folders written in the last N minutes (a run in "
                                             "progress); 0 clears them too."),
          yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete the embedding and pixel caches and the CV fold results (they are rebuilt on the next run)."""
    from breastclip.backbones.cache_admin import clear_cache
    from breastclip.user_cache import cache_root

    root = cache_root(cache_dir)
    if not yes:
        typer.confirm(f"delete the embedding and pixel caches and the CV fold results under {root}?", abort=True)
    r = clear_cache(cache_dir, busy_minutes=busy_minutes)
    typer.echo(f"removed {len(r.removed)} folder(s), {_mb(r.bytes_freed)} freed")
    if r.busy:
        typer.echo(f"spared {len(r.busy)} folder(s) written in the last {busy_minutes:g} minutes (a run in "
                   f"progress?): " + ", ".join(str(p.relative_to(root)) for p in r.busy))
