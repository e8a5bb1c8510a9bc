"""Commands ``run``, ``predict`` and ``demo``: thin wrappers over :mod:`breastclip.pipeline`,
:mod:`breastclip.predict` and :mod:`breastclip.demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import fail


def register(app: typer.Typer) -> None:
    app.command(name="run")(run)
    app.command(name="predict")(predict)
    app.command(name="demo")(demo)


def run(
    config: Path = typer.Argument(..., help="Experiment TOML file (see examples/), or a data set (class-folder "
                                  "tree, CSV of images, .npz, a native layout) to run the default experiment on."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a key: --set evaluation.n_bootstrap=200 "
                                   "(TOML value; methods by name: --set methods.mlp.params.epochs=3)."),
    offline: bool = typer.Option(False, "--offline", help="Swap every backbone for efficientnet-lite0 "
                                 "(+MiniLM when a method needs text); methods needing aligned text are skipped."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Run on the bundled synthetic set instead of "
                                   "data.source (for layouts you do not have locally)."),
    subset: int | None = typer.Option(None, "--subset", help="Use a stratified subset of about N images."),
    methods: str = typer.Option("", "--methods", help="Comma-separated method names to run (default: all)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Results folder (default: results/<name>)."),
    mlflow: bool = typer.Option(False, "--mlflow", help="Also log params, metrics and artifacts to MLflow."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; the summary only."),
) -> None:
    """Run one experiment: embed once (cached), train and evaluate every method, write one results folder."""
    from breastclip.config import ConfigError, load_config
    from breastclip.pipeline import run_experiment, synthetic_overrides
    from breastclip.pipeline.quickstart import default_experiment, is_data_source

    overrides = list(set_)
    if synthetic:
        overrides = synthetic_overrides() + overrides
    if output is not None:
        overrides.append(f"experiment.output={output.resolve()}")
    if mlflow:
        overrides.append("tracking.mlflow=true")
    only = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        if is_data_source(config):  # a data set, not a config: the default experiment (saved to edit and rerun)
            cfg = load_config(raw=default_experiment(config), overrides=overrides, offline=offline, subset=subset,
                              only_methods=only)
        else:
            cfg = load_config(config, overrides=overrides, offline=offline, subset=subset, only_methods=only)
    except ConfigError as e:
        _fail(str(e))
    try:
        result = run_experiment(cfg, progress=not quiet)
    except (ConfigError, RuntimeError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if is_data_source(config):
        typer.echo(f"config: {result.out_dir / 'config.resolved.toml'} (edit it and rerun: breastclip run "
                   f"{result.out_dir / 'config.resolved.toml'})")
    if result.failed:  # everything else was written; the exit status still says the comparison is incomplete
        typer.secho(f"{len(result.failed)} method(s) failed: {', '.join(result.failed)}; see {result.out_dir}/run.log",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)


def predict(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    run_dir: Path = typer.Option(..., "--run", help="A results folder written by `breastclip run`."),
    method: str = typer.Option("", "--method", "-m", help="Method to apply (default: the run's best)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="CSV to write (default: predictions "
                                       "beside the run, predict-<time>.csv)."),
    gradcam: bool = typer.Option(False, "--gradcam", help="Also write Grad-CAM overlays next to the CSV."),
    no_gate: bool = typer.Option(False, "--no-gate", help="Override the medical-image gate knowingly: its checks "
                                 "still run and say which images it would have rejected, but none is (recorded in "
                                 "the output)."),
    neighbours: int = typer.Option(0, "--neighbours", min=0, help="Also list the K most similar training images "
                                   "of each image (label, similarity): columns and <csv>_neighbours.csv."),
) -> None:
    """Classify new images with a finished run: medical gate first, then probabilities and the frozen threshold."""
    from breastclip.predict import PredictError, predict_images

    try:
        result = predict_images(images, run_dir, method=method or None, output=output, gradcam=gradcam,
                                gate=not no_gate, neighbours=neighbours, console=True)
    except (PredictError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"wrote {result.csv_path}")


def demo(
    data: Path | None = typer.Option(None, "--data", help="A local breastmnist.npz (or a folder holding it)."),
    offline: bool = typer.Option(False, "--offline", help="Do not try the network: efficientnet-lite0 offline "
                                 "backbone, local BreastMNIST or the bundled synthetic set."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Results folder (default: "
                                       "results/demo, a new timestamped one if it exists)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The main job in one command: BreastMNIST, frozen embeddings, several heads, a leaderboard and a report."""
    from breastclip.demo import run_demo

    try:
        run_demo(data=data, offline=offline, output=output, progress=not quiet)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        _fail(str(e))


def _fail(message: str) -> None:
    fail(message)
