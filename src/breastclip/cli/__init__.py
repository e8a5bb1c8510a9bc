"""Thin command line: each command calls one library function. Heavy imports happen inside the commands."""

from __future__ import annotations

import importlib

import typer

from .errors import ErrorHandlingGroup, debug_option, hide_flag_types

app = typer.Typer(
    name="breastclip",
    cls=ErrorHandlingGroup,
    help="Breast lesion classification with vision-language models. Research use only, not for diagnosis.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.callback()(debug_option)
hide_flag_types()

# Each module below defines `register(app)`, adding its commands or command group.
COMMAND_MODULES: tuple[str, ...] = (
    "run", "data", "images", "download", "embed", "zeroshot", "finetune", "evaluate", "report", "cache",
)


@app.command()
def version() -> None:
    """Print the breastclip version."""
    from breastclip import __version__

    typer.echo(__version__)


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"breastclip.cli.{name}").register(app)


_register()


def main() -> None:
    app()
