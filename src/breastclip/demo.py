"""``breastclip demo``: the main job in one command, online or air-gapped.

With internet: BreastMNIST through medmnist and OpenAI CLIP ViT-B/32. Without: the efficientnet-lite0 backbone
(ImageNet weights installed from the package index, paired with the MiniLM text encoder), on BreastMNIST when a
local ``breastmnist.npz`` is found (``--data``, ``$MEDMNIST_ROOT`` or ``~/.medmnist``), else on the bundled
synthetic set. The console and the report say which data and which backbone were used. Every method runs on
cached embeddings, so the whole demo takes a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from breastclip import RESEARCH_ONLY
from breastclip.user_cache import synthetic_dir

log = logging.getLogger("breastclip.run")

ONLINE_BACKBONE = "clip-vit-b32"
OFFLINE_BACKBONE = "efficientnet-lite0+minilm"


@dataclass(frozen=True)
class DemoChoice:
    """What the demo runs on, and why (printed and written into the report)."""

    data_kind: str  # "breastmnist" | "synthetic"
    data_path: Path
    data_why: str
    backbone: str
    backbone_why: str


def choose_data(data: str | Path | None, offline: bool) -> tuple[str, Path | None, str]:
    """BreastMNIST from ``data`` / the medmnist root, downloaded when online, else the synthetic set."""
    from breastclip.data.download import DownloadError, download_dataset, find_medmnist, medmnist_root

    if data is not None:
        found = find_medmnist("breastmnist", None, data, search_root=False)
        if found is None:
            raise FileNotFoundError(f"--data {data}: no breastmnist.npz in it or its subfolders (give the file, or a "
                                    f"folder holding it)")
        return "breastmnist", found, f"BreastMNIST from {found} (--data)"
    found = find_medmnist("breastmnist")
    if found is not None:
        return "breastmnist", found, f"BreastMNIST found locally at {found}"
    if not offline:
        try:
            path = download_dataset("breastmnist")
            return "breastmnist", path, f"BreastMNIST downloaded through medmnist to {path}"
        except DownloadError as e:
            log.info("BreastMNIST not available (%s)", e)
    return "synthetic", None, (f"no breastmnist.npz in {medmnist_root()} and no download possible: the bundled "
                               f"synthetic lesion set (NOT real patients; numbers only show that the tool works)")


def choose_backbone(offline: bool) -> tuple[str, str]:
    """CLIP ViT-B/32 when its weights are on disk or downloadable, else the offline efficientnet-lite0 pair."""
    from breastclip.backbones import create_backbone, get_entry, offline_status
    from breastclip.data.download import is_offline

    usable, why = offline_status(get_entry(ONLINE_BACKBONE))
    if usable:
        return ONLINE_BACKBONE, f"OpenAI CLIP ViT-B/32 (weights on disk: {why})"
    if offline:
        return OFFLINE_BACKBONE, "offline mode: efficientnet-lite0 (ImageNet) + MiniLM text encoder, no download"
    if is_offline("huggingface.co"):
        return OFFLINE_BACKBONE, ("no internet: efficientnet-lite0 (ImageNet, from the package index) + MiniLM "
                                  "text encoder instead of CLIP ViT-B/32; zero-shot needs an aligned text tower and "
                                  "is skipped")
    try:  # downloads the weights once into the open_clip / Hugging Face cache
        create_backbone(ONLINE_BACKBONE, "cpu")
        return ONLINE_BACKBONE, "OpenAI CLIP ViT-B/32 (weights downloaded)"
    except Exception as e:  # download refused or interrupted: fall back, and say so
        return OFFLINE_BACKBONE, f"CLIP ViT-B/32 weights could not be fetched ({e}); efficientnet-lite0 + MiniLM"


def demo_config(choice: DemoChoice, output: Path | None, cache_dir: str | Path | None = None) -> dict:
    """The experiment the demo runs, as a raw config dict (saved as config.resolved.toml like any run)."""
    data_kind = choice.data_kind
    bank = "breastmnist" if data_kind == "breastmnist" else "cbis_ddsm"
    methods = [
        {"name": "linear_probe", "head": "linear_probe", "params": {"class_weight": "balanced"}},
        {"name": "mlp_focal", "head": "mlp", "params": {"epochs": 30}},
        {"name": "fc", "head": "fc", "params": {"epochs": 35}},
        {"name": "similarity_guided", "head": "similarity_guided", "prompts": bank, "params": {"epochs": 40}},
        {"name": "tip_adapter", "head": "tip_adapter", "prompts": bank},
        {"name": "zeroshot", "head": "zeroshot", "prompts": bank},
    ]
    data = ({"source": str(choice.data_path), "format": "medmnist"} if data_kind == "breastmnist" else
            {"source": str(_synthetic_root()), "format": "synthetic",
             "options": {"n_patients": 60, "images_per_patient": 2, "size": 64}})
    return {
        "backbones": [choice.backbone],
        "experiment": {"name": "demo", "seed": 0, "output": str(output) if output else "",
                       "description": f"breastclip demo. Data: {choice.data_why}. Backbone: {choice.backbone_why}."},
        "data": data,
        # BreastMNIST's official split (kept for comparability with the MedMNIST v2 table) fails the audit: one
        # byte-identical train/test pair, and perceptual-hash near-duplicates that are mostly false matches at
        # 28 px. The demo goes on and the report shows the audit's findings.
        "split": {"on_leak": "warn" if data_kind == "breastmnist" else "refuse"},
        "embed": {"cache_dir": str(cache_dir) if cache_dir else ""},
        "methods": methods,
        "evaluation": {"n_bootstrap": 500, "thresholds": ["youden", "spec>=0.90", "sens>=0.90"]},
        "report": {"title": "breastclip demo: " + ("BreastMNIST" if data_kind == "breastmnist" else "synthetic set")},
    }


def _synthetic_root() -> Path:
    return synthetic_dir("synthetic-demo")


def run_demo(*, data: str | Path | None = None, offline: bool = False, output: str | Path | None = None,
             progress: bool = True, console=None, cache_dir: str | Path | None = None):
    """Run the demo experiment and print the leaderboard and the report path; returns the RunResult."""
    from rich.console import Console
    from rich.panel import Panel

    from breastclip.config import load_config
    from breastclip.pipeline import run_experiment

    console = console or Console()
    kind, path, why = choose_data(data, offline)
    backbone, bwhy = choose_backbone(offline)
    choice = DemoChoice(kind, path or _synthetic_root(), why, backbone, bwhy)
    console.print(Panel.fit(f"[bold]data[/bold]      {why}\n[bold]backbone[/bold]  {bwhy}\n[dim]{RESEARCH_ONLY}[/dim]",
                            title="breastclip demo"))
    out = Path(output).expanduser().resolve() if output else None  # None: ./results/demo (run_folder.default_output)
    cfg = load_config(raw=demo_config(choice, out, cache_dir))
    result = run_experiment(cfg, progress=progress, console=console)
    console.print(f"[bold]data:[/bold] {why}")
    console.print(f"[bold]backbone:[/bold] {bwhy}")
    if result.report_html is not None:
        console.print(f"[bold green]HTML report:[/bold green] {result.report_html}")
    return result
