"""``breastclip data``: inspect a source in its native layout, write a leak-audited split manifest.

Thin: each command reads the source with :func:`breastclip.data.sources.read_source` (reader options pass through
``-O key=value``), validates the :class:`~breastclip.data.manifest.Manifest` and, for ``split``, calls
``breastclip.data.splits.assign_splits`` / ``audit_leaks``. Other modules add commands to ``data_app``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from breastclip.cli.errors import fail

data_app = typer.Typer(
    name="data",
    help="Read data sets in their native layouts: inspect them, split them without leaks. Research use only.",
    no_args_is_help=True,
)

FORMAT_HELP = "Reader (cbis_ddsm, medmnist, breakhis, csv, folders); auto-detected when omitted."
OPTION_HELP = "Reader option as key=value, repeatable (e.g. -O labels=subtype -O magnification=40,100)."


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")


def parse_options(items: list[str] | None) -> dict:
    """``["labels=subtype", "magnification=40,100", "one_hot=true"]`` -> reader keyword arguments."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"option {item!r} is not key=value", param_hint="--option")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = _coerce(value.strip())
    return out


def _coerce(value: str):
    if "," in value:
        return [_coerce(v.strip()) for v in value.split(",") if v.strip()]
    low = value.lower()
    if low in {"true", "yes"}:
        return True
    if low in {"false", "no"}:
        return False
    if low in {"none", "null"}:
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _read(source: Path, format: str | None, option: list[str] | None):
    import inspect as _inspect

    from breastclip.data.sources import FORMATS, SourceError, detect_format, read_source

    options = parse_options(option)
    try:
        fmt = format or detect_format(source)
        if fmt in FORMATS:
            params = _inspect.signature(FORMATS[fmt].read).parameters
            unknown = sorted(set(options) - set(params))
            if unknown:
                known = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY]
                raise SourceError(f"reader '{fmt}' has no option {unknown}; its options: {known}")
        return fmt, read_source(source, format=fmt, **options)
    except (SourceError, ValueError, TypeError) as e:
        fail(str(e))


def _print_summary(console, manifest, fmt: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    s = manifest.summary()
    console.print(f"[bold]{escape(s['name'])}[/bold] ({fmt}): {s['images']} images, {len(s['classes'])} classes, "
                  f"root {escape(s['root'])}")
    table = Table(title="images per class and split")
    splits = [k for k in ("train", "val", "test", "(none)") if k in s["classes_per_split"]]
    table.add_column("class")
    for sp in splits:
        table.add_column(sp, justify="right")
    table.add_column("total", justify="right")
    for cls, n in s["classes"].items():
        table.add_row(escape(cls), *[str(s["classes_per_split"][sp].get(cls, 0)) for sp in splits], str(n))
    console.print(table)
    origin = "from the source" if s["patient_ids_from_source"] else "none in the source: every image is its own group"
    console.print(f"patients: {s['patients']} ({origin})")
    if s["metadata"]:
        meta = Table(title="metadata")
        for col in ("column", "missing", "unique", "values"):
            meta.add_column(col)
        for col, info in s["metadata"].items():
            if "top" in info:
                values = ", ".join(f"{k} {v}" for k, v in info["top"].items())
            else:
                values = f"{info['min']:g} .. {info['max']:g} (mean {info['mean']:.3g})"
            meta.add_row(escape(col), str(info["missing"]), str(info["unique"]), escape(values[:90]))
        console.print(meta)
    for note in s["notes"]:
        console.print(f"note: {escape(note)}", highlight=False)


ALLOW_OUTSIDE_HELP = "Accept image paths outside the data folder (../x.png, absolute paths); they are reported."


def _problems(manifest, check_files: bool, allow_outside_root: bool = False) -> list[str]:
    from breastclip.data.manifest import ManifestError

    try:
        manifest.validate(check_files=check_files, allow_outside_root=allow_outside_root)
        return []
    except ManifestError as e:
        out = []
        for p in e.problems:
            lines = p.splitlines()
            out.append("\n".join(lines[:21]) + (f"\n  ... and {len(lines) - 21} more" if len(lines) > 21 else ""))
        return out


def _decode_problems(manifest, workers: int) -> list[str]:
    """One problem listing the images that do not decode (the same decoder the embedding step uses)."""
    from breastclip.data.images import ImageFailure, format_failures, load_images

    failures = []
    paths = manifest.paths()
    for start in range(0, len(paths), 64):  # chunks: decoded arrays are dropped as soon as they are checked
        failures += load_images(paths[start:start + 64], size=64, workers=workers)[1]
    if not failures:
        return []
    root = str(manifest.root).rstrip("/") + "/"
    shown = [ImageFailure(f.path[len(root):] if f.path.startswith(root) else f.path, f.problem) for f in failures]
    return [format_failures(shown, limit=20)]


def _audit(manifest):
    """LeakAudit of the manifest's splits."""
    from breastclip.data.splits import audit_leaks

    return audit_leaks(manifest)


def _audit_dict(audit) -> dict:
    return audit.to_dict()


@data_app.command()
def inspect(
    source: Path = typer.Argument(..., help="Data set folder or file in its native layout."),
    format: str = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    option: list[str] = typer.Option(None, "--option", "-O", help=OPTION_HELP),
    check_files: bool = typer.Option(True, help="Check that every image file exists."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help=ALLOW_OUTSIDE_HELP),
    decode: bool = typer.Option(False, "--decode", help="Also decode every image (corrupt, truncated, not an "
                                "image, ...); without it the files are only checked to exist."),
    workers: int = typer.Option(4, help="Threads for --decode."),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="Leak-audit the source's own splits (hashes images)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
) -> None:
    """Class counts, patients, metadata and problems of a data source (exit 1 when problems are found)."""
    from rich.console import Console
    from rich.markup import escape

    from breastclip import RESEARCH_ONLY

    fmt, manifest = _read(source, format, option)
    problems = _problems(manifest, check_files, allow_outside_root)
    if decode and not problems:
        problems += _decode_problems(manifest, workers)
    has_split = bool((manifest.df["split"] != "").any())
    result = _audit(manifest) if has_split and audit and not problems else None
    if has_split and audit and not problems and result is None:
        problems.append("leak audit unavailable: breastclip.data.splits cannot be imported")
    if as_json:
        out = {"format": fmt, **manifest.summary(), "problems": problems, "decoded": decode,
               "leak_audit": _audit_dict(result) if result is not None else None, "notice": RESEARCH_ONLY}
        typer.echo(json.dumps(out, indent=2))
    else:
        console = Console()
        _print_summary(console, manifest, fmt)
        if problems:
            console.print(f"[red]{len(problems)} problem(s) found:[/red]")
            for p in problems:
                console.print(f"[red]-[/red] {escape(p)}", highlight=False)
        else:
            console.print("[green]no problems found[/green]" + ("" if decode else
                          " (images not decoded: --decode checks that every file opens)"))
        if result is not None:
            verdict = "[green]passed[/green]" if result.ok else "[red]FAILED[/red]"
            console.print(f"leak audit of the source's splits: {verdict}")
            for p in result.problems:
                console.print(f"  - {escape(str(p))}", highlight=False)
            for w in result.warnings:
                console.print(f"  warning: {escape(str(w))}", highlight=False)
        elif has_split and not audit:
            console.print("leak audit of the source's splits skipped (--no-audit)")
        console.print(RESEARCH_ONLY)
    if problems or (result is not None and not result.ok):
        raise typer.Exit(1)


def _leak_hint(group_duplicates: bool, keep_official: bool) -> str:
    """What to try after a failed audit: only the switches not already given."""
    tries = [flag for flag, given in (("--group-duplicates", group_duplicates), ("--no-keep-official", not keep_official))
             if not given]
    head = f"try {' and/or '.join(tries)}; " if tries else ""
    return head + "--allow-leaks writes it anyway"


@data_app.command()
def split(
    source: Path = typer.Argument(..., help="Data set folder or file in its native layout."),
    output: Path = typer.Option(..., "--output", "-o", help="Manifest CSV to write (JSON sidecar and audit beside it)."),
    format: str = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    option: list[str] = typer.Option(None, "--option", "-O", help=OPTION_HELP),
    fractions: str = typer.Option("0.64,0.16,0.20", help="train,val,test fractions."),
    seed: int = typer.Option(0, help="Random seed of the split."),
    keep_official: bool = typer.Option(True, help="Keep the source's official split where it has one."),
    group_duplicates: bool = typer.Option(False, help="Keep identical / near-duplicate images in one part (BUSI)."),
    near_duplicates: str = typer.Option("warn", help="Near-duplicate images across parts (content hash + detail): "
                                        "refuse (fail the audit), warn (default: list them with a contact sheet) "
                                        "or off."),
    workers: int = typer.Option(0, help="Processes for image hashing (0: in this process)."),
    allow_leaks: bool = typer.Option(False, help="Write the manifest even when the leak audit fails."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help=ALLOW_OUTSIDE_HELP),
) -> None:
    """Patient-grouped, stratified train/val/test split of a source, written with its leak audit."""
    from breastclip import RESEARCH_ONLY

    try:
        fr = tuple(float(x) for x in fractions.split(","))
    except ValueError as e:
        raise typer.BadParameter(f"{fractions!r} is not three comma-separated numbers", param_hint="--fractions") from e
    if len(fr) != 3:
        raise typer.BadParameter(f"{fractions!r} needs three fractions (train,val,test)", param_hint="--fractions")
    audit_path = output.with_name(output.stem + ".audit.json")
    # an audit file without its manifest is left by a refused (leaking) attempt and may be replaced
    targets = [output, output.with_suffix(".json")] + ([audit_path] if output.exists() else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        fail(f"{', '.join(existing)} already exist; pass --force to overwrite")
    from breastclip.data.splits import assign_splits, audit_leaks

    fmt, manifest = _read(source, format, option)
    problems = _problems(manifest, True, allow_outside_root)
    if problems:
        typer.secho("error: the source has problems; fix them first (see `breastclip data inspect`):\n- "
                    + "\n- ".join(problems), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    try:
        result = assign_splits(manifest, fractions=fr, seed=seed, keep_official=keep_official,
                               group_duplicates=group_duplicates, workers=workers)
    except ValueError as e:
        fail(f"cannot split: {e}")
    sheet_path = output.with_name(output.stem + ".pairs.png")
    try:
        audit = audit_leaks(result, near_duplicates=near_duplicates, workers=workers, contact_sheet=sheet_path)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--near-duplicates") from e
    if audit.contact_sheet:
        audit.contact_sheet = sheet_path.name  # beside the audit; no local path in the JSON
    report = {"source": str(source), "format": fmt, "fractions": fr, "seed": seed, "keep_official": keep_official,
              "group_duplicates": group_duplicates, "splits": result.summary()["classes_per_split"],
              **_audit_dict(audit), "notice": RESEARCH_ONLY}
    output.parent.mkdir(parents=True, exist_ok=True)
    audit_path.write_text(json.dumps(report, indent=2, default=str))
    counts = ", ".join(f"{k} {v}" for k, v in result.summary()["splits"].items())
    if not audit.ok and not allow_leaks:
        typer.secho(f"leak audit FAILED ({audit_path}); manifest not written:\n- " + "\n- ".join(map(str, audit.problems))
                    + f"\n({_leak_hint(group_duplicates, keep_official)})", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    result.to_csv(output)
    verdict = "passed" if audit.ok else "FAILED (written because of --allow-leaks)"
    typer.echo(f"wrote {output} ({len(result)} images: {counts}); leak audit {verdict}: {audit_path}")
    for w in audit.warnings:
        typer.echo(f"warning: {w}")
    typer.echo(RESEARCH_ONLY)
