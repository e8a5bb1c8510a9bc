"""The results folder of a run: its layout, the atomic claim at the start, and every read and write of it.

One owner: ``breastclip run`` writes through a :class:`RunFolder`, and ``predict``, ``evaluate`` and the report
read through one; no other module spells a file name of the folder. Layout (self-describing names)::

    config.resolved.toml   environment.json   run_state.json   run.log   .breastclip.lock
    manifest.csv (+ manifest.json)   leak_audit.json   flow.json   embeddings.json
    methods/<method>/{model/, predictions.csv, history.json, method.json, operating_point.json, cv_results.csv}
    predictions.csv   leaderboard.csv   leaderboard.md   metrics.json   comparisons.csv
    gate/gate.json   gate/<backbone>/{ood/, medical/, class_means.npz}   gradcam/<label>/
    figures/   report.docx   report.html   MODEL_CARD.md   predict/predict-<time>.csv (+ .json)

The claim: a run takes its folder with an exclusive ``os.mkdir`` (a new folder) and an advisory lock on
``.breastclip.lock`` held for the whole run (the kernel drops it when the process ends, even on ``kill -9``, so an
interrupted run can be resumed and a running one never is). Two runs given the same folder therefore never write
into the same place: the second resumes nothing that is running, and goes to a new timestamped sibling (or is
refused, ``experiment.on_existing = "refuse"``). A run that fails before doing any work removes the files it
wrote, and the folder when it made it, so no stub displaces the next run's folder name.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from breastclip.config import ExperimentConfig, from_dict
from breastclip.data.manifest import Manifest
from breastclip.pipeline.results import atomic_write_csv, atomic_write_text, write_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Text columns of a predictions table (everything else is a probability).
PREDICTION_DTYPES = {"id": str, "patient_id": str, "split": str, "method": str, "y_true": str, "y_pred": str}


class ResultsFolderError(RuntimeError):
    """The results folder cannot be used as asked, or a file in it is missing or unreadable (the message names it)."""


def safe_name(label: str) -> str:
    """A folder name for a method label (``linear_probe@clip-vit-b32`` stays readable)."""
    return "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in label)


class RunFolder:
    """One results folder: every path in it, and every read and write of it."""

    CONFIG = "config.resolved.toml"
    STATE = "run_state.json"
    LOCK = ".breastclip.lock"
    LOG = "run.log"
    ENVIRONMENT = "environment.json"
    MANIFEST = "manifest.csv"
    MANIFEST_META = "manifest.json"
    LEAK_AUDIT = "leak_audit.json"
    LEAK_PAIRS = "leak_audit_pairs.png"  # contact sheet of the image pairs the audit flagged (when any)
    FLOW = "flow.json"
    EMBEDDINGS = "embeddings.json"
    PREDICTIONS = "predictions.csv"
    LEADERBOARD = "leaderboard.csv"
    LEADERBOARD_MD = "leaderboard.md"
    METRICS = "metrics.json"
    COMPARISONS = "comparisons.csv"
    GATE = "gate"
    GATE_SUMMARY = "gate.json"
    GRADCAM = "gradcam"
    GRADCAM_CASES = "gradcam/cases.csv"  # which test images the overlays explain (TP/FP/FN/TN of the selection)
    NEIGHBOURS = "neighbours.csv"  # nearest training images of the selected method's confident errors
    METHODS = "methods"
    PREDICT = "predict"
    # files in a method's folder
    METHOD_RECORD = "method.json"
    METHOD_MODEL = "model"
    METHOD_HISTORY = "history.json"
    OPERATING_POINT = "operating_point.json"
    CV_RESULTS = "cv_results.csv"
    SEEDS = "seeds.csv"  # mean +- sd over experiment.seeds per method
    SEEDS_MD = "seeds.md"
    LABEL_EFFICIENCY = "label_efficiency.csv"  # test figures of each method refitted on subsets of its training pool
    LABEL_EFFICIENCY_FIGURE = "figures/label_efficiency"  # .png and .jpg
    #: What a run writes before its first step; removed again when the run fails before doing any work.
    SETUP_FILES = (CONFIG, STATE, LOG, ENVIRONMENT, LOCK)
    #: What proves a run did work (the data step's outputs onwards).
    WORK_FILES = (FLOW, LEAK_AUDIT, LEAK_PAIRS, MANIFEST, METHODS)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- paths ----------------------------------------------------------------------------------------------
    def method_dir(self, label: str) -> Path:
        return self.path / self.METHODS / safe_name(label)

    def model_dir(self, label: str) -> Path:
        return self.method_dir(label) / self.METHOD_MODEL

    def gate_dir(self, backbone: str | None = None) -> Path:
        return self.path / self.GATE if backbone is None else self.path / self.GATE / safe_name(backbone)

    def gradcam_dir(self, label: str) -> Path:
        return self.path / self.GRADCAM / safe_name(label)

    def new_predict_csv(self) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        return self.path / self.PREDICT / f"predict-{stamp}.csv"

    def has_work(self) -> bool:
        """Whether any step of a run has written its output here (the data step onwards)."""
        return any((self.path / name).exists() for name in self.WORK_FILES)

    # ---- generic reads and writes (atomic) ------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path / name, obj)

    def write_csv(self, name: str, df: pd.DataFrame) -> Path:
        return atomic_write_csv(self.path / name, df)

    def read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResultsFolderError(f"{path} is missing from the results folder") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ResultsFolderError(f"{path} cannot be read as JSON: {e}") from None

    def read_json_or(self, name: str, default: Any) -> Any:
        """``read_json`` for optional files: ``default`` when the file is absent (a damaged file still raises)."""
        return self.read_json(name) if (self.path / name).is_file() else default

    def read_csv(self, name: str, dtype: dict | None = None) -> pd.DataFrame:
        path = self.path / name
        try:
            return pd.read_csv(path, dtype=dtype)
        except FileNotFoundError:
            raise ResultsFolderError(f"{path} is missing from the results folder") from None
        except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:
            raise ResultsFolderError(f"{path} cannot be read as CSV: {e}") from None

    # ---- run state ------------------------------------------------------------------------------------------
    def read_state(self) -> dict | None:
        """``run_state.json``, or None when there is none (or it is damaged: then the folder is not ours)."""
        try:
            state = json.loads((self.path / self.STATE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return state if isinstance(state, dict) else None

    def write_state(self, identity: str, **fields: Any) -> None:
        state = self.read_state() or {}
        state.update({"identity": identity, **fields})
        atomic_write_text(self.path / self.STATE, json.dumps(state, indent=2, default=str))

    def is_complete(self) -> bool:
        return bool((self.read_state() or {}).get("complete"))

    # ---- the run's files ------------------------------------------------------------------------------------
    def write_config(self, text: str) -> Path:
        return self.write_text(self.CONFIG, text)

    def read_config(self) -> ExperimentConfig:
        path = self.path / self.CONFIG
        try:
            return from_dict(tomllib.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ResultsFolderError(f"{path} is missing from the results folder") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as e:
            raise ResultsFolderError(f"{path} cannot be read as an experiment config: {e}") from None

    def write_manifest(self, manifest: Manifest) -> None:
        manifest.to_csv(self.path / self.MANIFEST)

    def has_split(self) -> bool:
        """Whether the data step finished here (the manifest with its split and the leak audit)."""
        return (self.path / self.MANIFEST).is_file() and (self.path / self.LEAK_AUDIT).is_file()

    def read_manifest(self) -> Manifest:
        try:
            return Manifest.from_csv(self.path / self.MANIFEST)
        except FileNotFoundError:
            raise ResultsFolderError(f"{self.path / self.MANIFEST} is missing from the results folder") from None

    def read_classes(self) -> list[str]:
        meta = self.read_json(self.MANIFEST_META)
        if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
            raise ResultsFolderError(f"{self.path / self.MANIFEST_META} has no list of classes")
        return [str(c) for c in meta["classes"]]

    def read_predictions(self) -> pd.DataFrame:
        return self.read_csv(self.PREDICTIONS, dtype=PREDICTION_DTYPES)

    def write_predictions(self, table: pd.DataFrame) -> Path:
        return self.write_csv(self.PREDICTIONS, table)

    def read_leaderboard(self) -> pd.DataFrame:
        board = self.read_csv(self.LEADERBOARD, dtype={"method": str})
        if "method" not in board.columns:
            raise ResultsFolderError(f"{self.path / self.LEADERBOARD} has no 'method' column")
        return board

    def write_leaderboard(self, board: pd.DataFrame, markdown: str) -> None:
        self.write_csv(self.LEADERBOARD, board)
        self.write_text(self.LEADERBOARD_MD, markdown)

    # ---- one method's files ---------------------------------------------------------------------------------
    def write_method_record(self, label: str, record: dict) -> Path:
        return write_json(self.method_dir(label) / self.METHOD_RECORD, record)

    def read_method_record(self, label: str) -> dict:
        record = self.read_json(f"{self.METHODS}/{safe_name(label)}/{self.METHOD_RECORD}")
        if not isinstance(record, dict):
            raise ResultsFolderError(f"{self.method_dir(label) / self.METHOD_RECORD} is not a JSON object")
        return record

    def write_method_predictions(self, label: str, table: pd.DataFrame) -> Path:
        return atomic_write_csv(self.method_dir(label) / self.PREDICTIONS, table)

    def read_method_predictions(self, label: str) -> pd.DataFrame:
        return self.read_csv(f"{self.METHODS}/{safe_name(label)}/{self.PREDICTIONS}", dtype=PREDICTION_DTYPES)

    def write_method_text(self, label: str, name: str, text: str) -> Path:
        return atomic_write_text(self.method_dir(label) / name, text)

    def write_history(self, label: str, history: list[dict]) -> Path:
        return write_json(self.method_dir(label) / self.METHOD_HISTORY, history)

    def read_history(self, label: str) -> list[dict] | None:
        return self.read_json_or(f"{self.METHODS}/{safe_name(label)}/{self.METHOD_HISTORY}", None)

    def write_operating_point(self, label: str, op: dict) -> Path:
        return write_json(self.method_dir(label) / self.OPERATING_POINT, op)

    def read_operating_point(self, label: str) -> dict:
        return self.read_json_or(f"{self.METHODS}/{safe_name(label)}/{self.OPERATING_POINT}", {})

    # ---- claiming ---------------------------------------------------------------------------------------------
    def try_lock(self) -> RunLock | None:
        """Take the folder's run lock, or None when another live process holds it."""
        fd = os.open(self.path / self.LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return RunLock(fd)

    def lock_holder(self) -> str:
        """The pid written by the run holding the lock (for messages), or '?'."""
        try:
            return (self.path / self.LOCK).read_text().strip() or "?"
        except OSError:
            return "?"

    def discard_setup(self, remove_folder: bool) -> None:
        """Remove what a run writes before its first step (never another file), and the folder if asked and empty."""
        for name in self.SETUP_FILES:
            (self.path / name).unlink(missing_ok=True)
        if remove_folder:
            try:
                self.path.rmdir()
            except OSError:  # something else is in it now (a user's file, another run's lock): leave it
                pass


class RunLock:
    """The advisory lock a run holds on its folder for its whole duration (released by the kernel on exit)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


@dataclass
class RunClaim:
    """The folder a run owns: where, whether it resumes an unfinished run there, and the message saying so."""

    folder: RunFolder
    resume: bool
    message: str
    made: bool  # this claim created the folder: a failure before any work removes it again
    lock: RunLock
    made_parents: tuple[Path, ...] = ()  # parent folders this claim created, innermost first


    @property
    def path(self) -> Path:
        return self.folder.path

    def release(self, *, failed: bool = False) -> None:
        """Drop the lock; after a failure before any work, remove the run's setup files (and a folder it made)."""
        try:
            if failed and not self.resume and not self.folder.has_work():
                self.folder.discard_setup(remove_folder=self.made)
                for parent in self.made_parents if self.made else ():
                    try:
                        parent.rmdir()
                    except OSError:  # another run or the user put something there
                        break
        finally:
            self.lock.release()


def default_output(cfg: ExperimentConfig, cwd: Path | None = None) -> Path:
    """``experiment.output``, or ``./results/<experiment name>``."""
    if cfg.experiment.output:
        return Path(cfg.experiment.output)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.experiment.name) or "experiment"
    return (cwd or Path.cwd()) / "results" / safe


def claim_output(cfg: ExperimentConfig, cwd: Path | None = None) -> RunClaim:
    """Claim the results folder for ``cfg``; never share it with a running run, never overwrite a previous one.

    - missing or empty folder: take it;
    - an unfinished run of the identical config that no process is running: resume in it;
    - anything else (a running run, a finished run, another config, a folder breastclip did not make): a new
      timestamped sibling, or :class:`ResultsFolderError` when ``experiment.on_existing = "refuse"``.
    """
    target = default_output(cfg, cwd)
    for _attempt in range(5):  # a racing run may remove a stub between our look and our lock: look again
        try:
            return _claim(cfg, target)
        except FileNotFoundError:
            time.sleep(0.05)
    raise ResultsFolderError(f"could not claim {target}: it keeps appearing and disappearing (another process?)")


_WRITABLE = "choose a folder you can write to (--output, or experiment.output) or fix its permissions"


def _claim(cfg: ExperimentConfig, target: Path) -> RunClaim:
    policy = cfg.experiment.on_existing
    made_parents = tuple(p for p in target.parents if not p.exists())
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsFolderError(f"cannot create the results folder's parent {target.parent}: {e}; {_WRITABLE}") from None
    try:
        target.mkdir()
        made = True
    except FileExistsError:
        made = False
    except OSError as e:
        raise ResultsFolderError(f"cannot create the results folder {target}: {e}; {_WRITABLE}") from None
    if not target.is_dir():
        raise ResultsFolderError(f"{target} exists and is not a folder")
    folder = RunFolder(target)
    lock, why, resume = _take(folder, cfg, made)
    if lock is not None:
        message = (f"resuming the unfinished run in {target} (same config)" if resume
                   else f"writing results to {target}")
        return RunClaim(folder, resume, message, made, lock, made_parents)
    if policy == "refuse":
        raise ResultsFolderError(f"{target} {why}; choose another experiment.output or remove it yourself")
    new, lock = _claim_sibling(target)
    return RunClaim(new, False, f"{target} {why}; leaving it untouched and writing to {new.path}", True, lock,
                    made_parents)


def _take(folder: RunFolder, cfg: ExperimentConfig, made: bool) -> tuple[RunLock | None, str, bool]:
    """(lock, "", resume) when the run may use ``folder``, else (None, why not, False). Decided under the lock."""
    entries = set() if made else {p.name for p in folder.path.iterdir()}
    if entries and not entries & {RunFolder.STATE, RunFolder.LOCK}:
        return None, "exists and was not made by breastclip", False  # not ours: not even a lock file goes in
    lock = folder.try_lock()
    if lock is None:
        return None, f"is in use by another run (process {folder.lock_holder()})", False
    if made or not [p for p in folder.path.iterdir() if p.name != RunFolder.LOCK]:  # new or empty
        return lock, "", False
    state = folder.read_state()
    if state is None:
        why = "exists and was not made by breastclip"
    elif state.get("identity") != cfg.identity():
        why = "holds a run of a different config"
    elif state.get("complete"):
        why = "holds a finished run"
    elif cfg.experiment.on_existing != "auto":
        why = "holds an unfinished run (on_existing = 'new')"
    else:
        return lock, "", True  # an unfinished run of the identical config that no process is running
    lock.release()
    return None, why, False


def _claim_sibling(target: Path) -> tuple[RunFolder, RunLock]:
    """A new ``<name>-<time>[-i]`` folder beside ``target``, made with an exclusive mkdir and locked."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1, 10_000):
        cand = target.with_name(f"{target.name}-{stamp}" + (f"-{i}" if i > 1 else ""))
        try:
            cand.mkdir()
        except FileExistsError:
            continue
        folder = RunFolder(cand)
        lock = folder.try_lock()
        if lock is not None:
            return folder, lock
    raise ResultsFolderError(f"no free folder name beside {target}")
