"""`breastclip finetune` and `breastclip explain`: thin wrappers over breastclip.finetune and breastclip.explain."""

from __future__ import annotations

from pathlib import Path

import typer


def _progress_callback(progress):
    """A (stage, i, n) callback driving one rich task per stage."""
    tasks: dict[str, int] = {}

    def update(stage: str, i: int, n: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=n)
        progress.update(tasks[stage], completed=i, total=n)

    return update


def finetune_command(
    manifest: Path = typer.Argument(..., help="Manifest CSV (with its JSON sidecar) holding train/val/test splits."),
    out: Path = typer.Option(Path("finetune-run"), "--out", "-o", help="Run folder (resumed when it exists)."),
    arch: str = typer.Option("resnet18", help="resnet18, resnet50 or efficientnet-lite0 (offline ImageNet weights)."),
    pretrained: bool = typer.Option(True, help="Start from ImageNet weights (--no-pretrained: random init)."),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-4),
    weight_decay: float = typer.Option(0.0),
    loss: str = typer.Option("ce", help="ce or bce."),
    class_weight: str | None = typer.Option(None, help="'balanced' for inverse-frequency class weights."),
    image_size: int | None = typer.Option(None, help="Input size (default: the architecture's)."),
    augment: bool = typer.Option(True, help="Augment training rows (flips, rot90, jitter, shift-scale-rotate)."),
    minority_only: bool = typer.Option(False, help="Augment only classes smaller than the largest."),
    patience: int | None = typer.Option(None, help="Early stop after this many epochs without a better val loss."),
    seed: int = typer.Option(0),
    num_workers: int | None = typer.Option(None, help="Augmentation workers (default: 0 on CPU, 8 on CUDA)."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
    overwrite: bool = typer.Option(False, help="Replace a different run already in --out."),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept image paths outside the "
                                            "manifest's data folder (they are reported)."),
) -> None:
    """Fine-tune a CNN end to end; write predictions.csv (val + test), history.csv and best.safetensors."""
    from rich.console import Console
    from rich.progress import Progress

    from breastclip import RESEARCH_ONLY
    from breastclip.data.manifest import Manifest
    from breastclip.finetune import AugmentConfig, FinetuneConfig, finetune

    config = FinetuneConfig(arch=arch, pretrained=pretrained, image_size=image_size, epochs=epochs,
                            batch_size=batch_size, lr=lr, weight_decay=weight_decay, loss=loss,
                            class_weight=class_weight, augment=augment,
                            augmentation=AugmentConfig(minority_only=minority_only), patience=patience, seed=seed,
                            num_workers=num_workers, device=device)
    console = Console()
    with Progress(console=console, transient=True) as progress:
        checked = Manifest.from_csv(manifest).validate(check_files=False, allow_outside_root=allow_outside_root)
        res = finetune(checked, config, out, overwrite=overwrite,
                       progress=_progress_callback(progress))
    last = res.history.iloc[-1] if len(res.history) else None
    console.print(f"[bold]{config.method_name}[/bold]: {len(res.history)} epochs, best epoch {res.best_epoch}"
                  + (f", last train loss {last.train_loss:.4f}, val loss {last.val_loss:.4f}" if last is not None
                     else ""))
    acc = {s: float((g["y_true"] == g["y_pred"]).mean()) for s, g in res.predictions.groupby("split")}
    console.print("accuracy " + ", ".join(f"{s} {a:.3f}" for s, a in sorted(acc.items())))
    if res.failures:
        console.print(f"[yellow]{len(res.failures)} images could not be decoded: see {out / 'failures.csv'}")
    console.print(f"wrote {out / 'predictions.csv'} and {res.checkpoint}")
    console.print(RESEARCH_ONLY)


def explain_command(
    source: Path = typer.Argument(..., help="An image file or a folder of images."),
    out: Path = typer.Option(Path("explanations"), "--out", "-o", help="Folder for overlays and figures."),
    run: Path | None = typer.Option(None, help="A fine-tuning run folder (or its best.safetensors)."),
    backbone: str | None = typer.Option(None, help="A CLIP backbone name (see breastclip backbones)."),
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="Text prompt(s) to explain (CLIP backbones)."),
    bank: str | None = typer.Option(None, help="Prompt bank name or TOML/JSON file: one target per class."),
    target: str | None = typer.Option(None, help="Class name or prompt to explain (default: the top output)."),
    method: str = typer.Option("gradcam", help="gradcam, gradcam++, hirescam or layercam."),
    faithfulness: bool = typer.Option(True, help="ROAD deletion curve vs random maps (figure + JSON)."),
    device: str | None = typer.Option(None),
    overwrite: bool = typer.Option(False),
) -> None:
    """Grad-CAM overlays for a fine-tuned CNN (--run) or a CLIP image tower (--backbone + --prompt)."""
    from rich.console import Console

    from breastclip import RESEARCH_ONLY
    from breastclip.explain import (
        cam_model_for_backbone,
        cam_model_for_finetuned,
        collect_images,
        explain_images,
    )

    if (run is None) == (backbone is None):
        raise typer.BadParameter("give exactly one of --run (fine-tuned CNN) or --backbone (CLIP tower)")
    if run is not None:
        from breastclip.finetune import load_finetuned

        cam_model = cam_model_for_finetuned(load_finetuned(run, device=device))
    else:
        if not prompt and not bank:
            raise typer.BadParameter("a CLIP backbone is explained against text: add --prompt '...' or --bank NAME")
        from breastclip.backbones import create_backbone

        assert backbone is not None  # exactly one of --run / --backbone, checked above
        bb = create_backbone(backbone, device=device, precision="fp32")
        cam_model = cam_model_for_backbone(bb, prompt or None, bank=bank)
    tgt: int | str | None = target
    res = explain_images(collect_images(source), cam_model, out, target=tgt, method=method,
                         faithfulness=faithfulness, overwrite=overwrite)
    console = Console()
    console.print(f"{len(res.table)} overlays in {out} ({cam_model.description})")
    if res.curves is not None:
        s = res.curves.summary()
        console.print(f"ROAD deletion AUC: Grad-CAM {s['deletion_auc_gradcam']:.3f} vs random "
                      f"{s['deletion_auc_random']:.3f} (lower is more faithful); figure {res.figure}")
    if res.failures:
        console.print(f"[yellow]{len(res.failures)} files could not be decoded: see {out / 'failures.csv'}")
    console.print(RESEARCH_ONLY)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_command)
    app.command("explain")(explain_command)
