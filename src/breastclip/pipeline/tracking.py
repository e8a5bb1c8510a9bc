"""Optional MLflow tracking (``breastclip run --mlflow``): the resolved config as params, every method's headline
metrics, and the results folder's small files as artifacts. The results folder stays the record of the run."""

from __future__ import annotations

import logging
from types import ModuleType

import pandas as pd

from breastclip import RESEARCH_ONLY
from breastclip.config import ExperimentConfig
from breastclip.evaluation import Evaluation
from breastclip.evaluation.leaderboard import selected_summary
from breastclip.pipeline.run_folder import RunFolder

log = logging.getLogger("breastclip.run")
ARTIFACTS = (RunFolder.CONFIG, RunFolder.ENVIRONMENT, RunFolder.LEADERBOARD_MD, RunFolder.LEADERBOARD,
             RunFolder.METRICS, RunFolder.LEAK_AUDIT, "report.html", "report.docx", "MODEL_CARD.md", RunFolder.LOG,
             RunFolder.SEEDS, RunFolder.SEEDS_MD)


def require_mlflow() -> ModuleType:
    """The mlflow module, or an error saying how to install it (checked before any work is done)."""
    try:
        import mlflow  # optional (the tracking extra): imported only when a run asks for it
    except ImportError as e:
        raise RuntimeError("--mlflow needs MLflow: pip install 'breastclip[tracking]' (or mlflow-skinny)") from e
    return mlflow


def flat_params(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``section.key`` strings (MLflow params are flat, at most 6000 characters each)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, item in enumerate(v):
                out.update(flat_params(item, f"{key}.{item.get('name', i)}."))
        else:
            out[key] = str(v)[:6000]
    return out


def log_to_mlflow(cfg: ExperimentConfig, folder: RunFolder, board: pd.DataFrame,
                  evaluations: dict[str, Evaluation]) -> str:
    """Log one MLflow run for the experiment; returns its run id."""
    mlflow = require_mlflow()
    if cfg.tracking.tracking_uri:
        mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    mlflow.set_experiment(cfg.tracking.experiment or cfg.experiment.name)
    out = folder.path
    with mlflow.start_run(run_name=out.name) as run:
        mlflow.set_tags({"breastclip.results_folder": str(out), "breastclip.notice": RESEARCH_ONLY,
                         "breastclip.selected_method": str(board.attrs.get("selected")),
                         "breastclip.selection_metric": str(board.attrs.get("selection_metric"))})
        mlflow.log_params(flat_params(cfg.to_dict()))
        pooled = selected_summary(board) or {}
        if "pooled_over_seeds" in pooled:  # seeds: the method chosen by its mean, and its means over seeds
            mlflow.set_tag("breastclip.selected_method_over_seeds", pooled["method"])
            for col, v in pooled["pooled_over_seeds"].items():
                for stat in ("mean", "sd"):
                    if v[stat] is not None:
                        mlflow.log_metric(_key(f"selected.{col}.seeds_{stat}"), float(v[stat]))
        for label, ev in evaluations.items():
            for metric, h in ev.headline.items():
                v = h.get("estimate")
                if v is not None and v == v:
                    mlflow.log_metric(f"{_key(label)}.{metric}", float(v))
        for name in ARTIFACTS:
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
        log.info("MLflow: run %s in experiment '%s' (%s)", run.info.run_id, cfg.tracking.experiment or
                 cfg.experiment.name, mlflow.get_tracking_uri())
        return run.info.run_id


def _key(label: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in label)
