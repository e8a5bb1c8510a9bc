"""`breastclip zeroshot`: classify a data set with a prompt bank, no training; writes the predictions table."""

from __future__ import annotations

from pathlib import Path

import typer

from breastclip.cli.errors import fail
from breastclip.prompts.loader import list_banks


def zeroshot(
    source: Path = typer.Argument(..., exists=True, help="Manifest CSV or any source the data readers understand."),
    bank: str = typer.Option("busi", "--bank", help=f"Shipped bank ({', '.join(list_banks())}) or a .toml/.json file."),
    backbone: str = typer.Option("clip-vit-b32", "--backbone", "-b", help="Backbone with an aligned text tower."),
    out: Path = typer.Option(Path("zeroshot_predictions.csv"), "--out", "-o", help="Predictions table (CSV)."),
    split: str | None = typer.Option(None, help="Only this split (train, val, test)."),
    cache_dir: Path | None = typer.Option(None, help="Embedding cache folder."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 (default: CUDA when available)."),
    num_workers: int | None = typer.Option(None, min=0, help="Decoding worker processes (default: automatic)."),
    logit_scale: float = typer.Option(100.0, help="Softmax scale on cosine similarities (CLIP's 100)."),
    gate: bool = typer.Option(True, help="Also score each image as medical / non-medical (writes *_gate.csv)."),
    gate_threshold: float = typer.Option(0.5, help="P(medical) below this flags an image."),
    robustness: bool = typer.Option(True, help="Accuracy / AUC per prompt variant (writes *_robustness.csv)."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept image paths outside the "
                                            "manifest's data folder (they are reported)."),
) -> None:
    """Zero-shot classification with a prompt bank (prompts x templates averaged in embedding space)."""
    from breastclip import RESEARCH_ONLY
    from breastclip.data.sources import read_source
    from breastclip.heads.zeroshot import UnalignedTextError
    from breastclip.heads.zeroshot_run import run_zeroshot
    from breastclip.prompts import PromptBankError

    outputs = [out, out.with_name(out.stem + "_gate.csv"), out.with_name(out.stem + "_robustness.csv")]
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not overwrite:
        raise typer.BadParameter(f"{', '.join(existing)} exist; pass --overwrite to replace", param_hint="--out")
    try:
        manifest = read_source(source).validate(check_files=False, allow_outside_root=allow_outside_root)
        run = run_zeroshot(manifest, backbone, bank, split=split, cache_dir=cache_dir, device=device,
                           num_workers=num_workers, logit_scale=logit_scale, gate=gate, gate_threshold=gate_threshold,
                           robustness=robustness, progress=progress)
    except (UnalignedTextError, PromptBankError, ValueError, KeyError, FileNotFoundError) as e:
        fail(str(e.args[0] if e.args else e))
    out.parent.mkdir(parents=True, exist_ok=True)
    run.predictions.to_csv(out, index=False)
    written = [out]
    if run.gate is not None:
        run.gate.to_csv(outputs[1], index=False)
        written.append(outputs[1])
    if run.robustness is not None:
        run.robustness.to_csv(outputs[2], index=False)
        written.append(outputs[2])
    s = run.summary
    if "accuracy" in s:
        typer.echo(f"zero-shot on {s['n_images']} images: accuracy {s['accuracy']:.3f}, AUC {s['auc']:.3f}")
    if "prompts_accuracy_std" in s:
        typer.echo(f"prompt robustness over {s['prompts_n_variants']} variants: accuracy "
                   f"{s['prompts_accuracy_min']:.3f}-{s['prompts_accuracy_max']:.3f} (sd {s['prompts_accuracy_std']:.3f}), "
                   f"AUC {s['prompts_auc_min']:.3f}-{s['prompts_auc_max']:.3f} (sd {s['prompts_auc_std']:.3f})")
    if "gate_rejected" in s:
        typer.echo(f"medical gate: {s['gate_rejected']} image(s) scored below {gate_threshold} (not medical?)")
    if run.failures:
        typer.echo(f"{len(run.failures)} image(s) failed to decode, e.g. {run.failures[0][1]}: {run.failures[0][2]}")
    typer.echo("wrote " + ", ".join(map(str, written)))
    typer.echo(RESEARCH_ONLY)


def register(app: typer.Typer) -> None:
    app.command("zeroshot")(zeroshot)
