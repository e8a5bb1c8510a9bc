"""``breastclip run``: one experiment config -> one results folder.

Data flows one way: source -> Manifest (subset) -> split + leak audit -> embeddings (cached, per backbone) ->
heads (+ the CNN baseline) -> predictions table -> evaluation + paired comparisons -> leaderboard -> report.
Every step writes its output into the results folder as soon as it is done, so an interrupted run of the same
config resumes where it stopped (see :mod:`breastclip.pipeline.results`).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from breastclip import RESEARCH_ONLY
from breastclip.config import ExperimentConfig
from breastclip.pipeline.context import RunResult
from breastclip.pipeline.core import run_core
from breastclip.pipeline.leaderboard import rich_table, summary_lines
from breastclip.pipeline.methods import validate_methods
from breastclip.pipeline.run_folder import RunClaim, RunFolder, claim_output
from breastclip.pipeline.tracking import require_mlflow
from breastclip.user_cache import synthetic_dir

__all__ = ["RunFolder", "RunResult", "run_experiment", "synthetic_overrides"]


def synthetic_overrides(root: str | Path | None = None) -> list[str]:
    """Overrides that point an experiment at the bundled synthetic set (generated once into the user cache)."""
    where = Path(root) if root else synthetic_dir("synthetic")
    return ["data.format=synthetic", f"data.source={where}", "data.options={}", "data.subset=0"]


def run_experiment(cfg: ExperimentConfig, *, progress: bool = True, console: Console | None = None,
                   claim: RunClaim | None = None) -> RunResult:
    """Run ``cfg`` end to end and return the leaderboard and where everything was written.

    The results folder is claimed first (see :func:`breastclip.pipeline.run_folder.claim_output`): a concurrent
    run given the same folder writes elsewhere and says where.
    """
    console = console or Console(stderr=False)
    t0 = time.perf_counter()
    validate_methods(cfg)  # a typo in a hyperparameter fails now, before a folder is made or an image is read
    if cfg.tracking.mlflow:
        require_mlflow()
    claim = claim or claim_output(cfg)
    console.print(f"[bold]breastclip run[/bold] {cfg.experiment.name}: {claim.message}")
    result = run_core(cfg, claim, console=console, progress=progress)
    result.seconds = time.perf_counter() - t0
    print_summary(result, console)
    return result


#: Width of the summary table when the output is not a terminal (a pipe, a log file, CI).
SUMMARY_WIDTH = 160


def print_summary(result: RunResult, console: Console) -> None:
    board = result.leaderboard
    if board is not None and not board.empty:
        # piped or logged (no terminal): rich would squeeze the table into 80 columns and cut its cells
        width = console.width
        if not console.is_terminal and width < SUMMARY_WIDTH:
            console.width = SUMMARY_WIDTH
        try:
            console.print(rich_table(board))
        finally:
            console.width = width
        for line in summary_lines(board):
            console.print(escape(line))
    for label, why in result.skipped.items():
        console.print(f"[yellow]skipped[/yellow] {label}: {why}")
    for label, why in result.failed.items():
        console.print(f"[red]FAILED[/red] {label}: {why} (details in run.log)")
    audit = result.leak_audit or {}
    if audit.get("ok") is False:
        problems = "; ".join(str(p) for p in audit.get("problems") or []) or "no details"
        console.print(f"[red]LEAK AUDIT FAILED[/red]: {problems}. The run went on (split.on_leak = 'warn'); every "
                      "test estimate may be inflated (see leak_audit.json).")
    console.print(f"time: {result.seconds:.1f} s" + ("   (resumed)" if result.resumed else ""))
    console.print(f"results: {result.out_dir}")
    if result.report_html is not None:
        console.print(f"report:  {result.report_html}")
    console.print(f"[dim]{RESEARCH_ONLY}[/dim]")
