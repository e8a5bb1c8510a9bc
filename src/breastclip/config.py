"""Experiment configuration: frozen dataclasses loaded from TOML, with command-line overrides.

One TOML file describes a whole comparison (data, split, backbones, methods, evaluation, report). Unknown keys are
errors naming the key and the valid ones. Paths written in the file (prompt-bank files included; a shipped bank is
named without a suffix or slash) are relative to the file's folder; paths given
on the command line (``--set data.source=...``) are relative to the current directory. The resolved configuration
(absolute paths, every default filled in) is saved beside every result as ``config.resolved.toml``.

Overrides use ``key.path=value`` with a TOML value (``--set backbones=["efficientnet-lite0"]``,
``--set evaluation.n_bootstrap=200``); a bare word is taken as a string. Methods are addressed by name
(``--set methods.mlp.params.epochs=3``) or index (``methods.0.params.epochs=3``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Metrics every evaluation reports on the test split (sensitivity / specificity: binary tasks only).
HEADLINE_METRICS = ("roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1_macro", "precision_macro",
                    "recall_macro", "sensitivity", "specificity")
#: Where ``evaluation.primary_metric`` is measured to select the recommended method (never on test).
SELECTION_SOURCES = ("val", "cv")
#: The default backbone: OpenAI CLIP ViT-B/32 through open_clip.
DEFAULT_BACKBONE = "clip-vit-b32"
#: The backbone ``--offline`` swaps in: real ImageNet weights installed from the package index, image only ...
OFFLINE_BACKBONE = "efficientnet-lite0"
#: ... or paired with the MiniLM text encoder when a method needs text (not aligned: no zero-shot).
OFFLINE_TEXT_BACKBONE = "efficientnet-lite0+minilm"
#: The CNN architecture ``--offline`` fine-tunes (ImageNet weights from the package index).
OFFLINE_CNN = "efficientnet-lite0"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the problem."""


# ---- sections -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentSection:
    """What the run is called, where it writes, and its master seed."""

    name: str = "experiment"
    description: str = ""
    seed: int = 0
    seeds: tuple[int, ...] = ()  # several: every method runs once per seed (labels <method>.seed<k>), mean +- sd
    label_fractions: tuple[float, ...] = ()  # label-efficiency curve: refit on these shares of train (per class)
    shots: tuple[int, ...] = ()  # ... or on this many training images per class
    output: str = ""  # empty: ./results/<name>
    on_existing: str = "auto"  # auto (resume identical, else new timestamped folder) | new | refuse


@dataclass(frozen=True)
class DataSection:
    """The data source in its native layout; ``options`` go to the reader as keyword arguments."""

    source: str = ""
    format: str = ""  # empty: auto-detect; "synthetic": generate the bundled synthetic set into `source`
    subset: int = 0  # 0: all images; N: a stratified, deterministic subset of N images (tiny runs)
    allow_outside_root: bool = False  # image paths leaving the data folder (../x.png) are refused unless true
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SplitSection:
    """Patient-grouped stratified split, then the leak audit."""

    fractions: tuple[float, ...] = (0.64, 0.16, 0.20)
    seed: int = -1  # -1: the experiment seed
    keep_official: bool = True
    on_leak: str = "refuse"  # refuse | warn
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EmbedSection:
    """How embeddings are computed and where the content-addressed cache lives."""

    cache_dir: str = ""  # the cache ROOT (embeddings go to ROOT/embeddings); empty: $BREASTCLIP_CACHE or ~/.cache/breastclip
    device: str = ""  # empty: automatic
    batch_size: int = 0  # 0: automatic
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSection:
    """One method to train and evaluate on every backbone (or the listed ones)."""

    name: str = ""
    head: str = ""  # a key of breastclip.method_registry.METHOD_KINDS (every head, and the CNN baseline)
    params: dict = field(default_factory=dict)
    prompts: str = ""  # prompt bank name or file, for methods that use text
    backbones: tuple[str, ...] = ()  # empty: every backbone of the experiment
    enabled: bool = True
    params_grid: dict = field(default_factory=dict)  # {name: [values]} searched when evaluation.selection = "cv"


@dataclass(frozen=True)
class EvaluationSection:
    """Metrics, confidence intervals, operating points, calibration and subgroups."""

    positive_class: str = ""  # binary tasks; empty: malignant/cancer when present, else the last class
    n_bootstrap: int = 1000
    ci: float = 0.95
    operating_point: str = "youden"  # the frozen threshold `predict` applies (chosen on validation)
    thresholds: tuple[str, ...] = ("youden",)
    subgroups: tuple[str, ...] = ()
    min_group_size: int = 10
    calibration: bool = True
    compare: bool = True
    primary_metric: str = "roc_auc"  # the selection figure: ranks the leaderboard, picks the recommended method
    selection: str = "val"  # where primary_metric is measured to select: "val" (validation split) | "cv" (train+val)
    cv_splits: int = 5  # selection = "cv": k of the stratified, patient-grouped k-fold over train+val ...
    cv_repeats: int = 2  # ... repeated with reshuffled folds ...
    cv_jobs: int = 2  # ... folds fitted in parallel (joblib processes)
    level: str = "image"  # image | breast (patient + laterality) | exam (exam_id): the unit metrics are computed on
    aggregate: str = "mean"  # mean | max | noisy_or: how image probabilities pool into a breast / exam
    severity: tuple[str, ...] = ()  # classes from least to most severe (a unit's label is its worst image's)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StudySection:
    """Facts only the investigators know, quoted by the report's reporting-guideline checklist (STARD 2015,
    TRIPOD+AI, CLAIM). Empty: the checklist says the item is not reported and names this key."""

    design: str = ""  # e.g. "retrospective analysis of a public data set"
    intended_use: str = ""  # clinical role of the index test (triage, second reader, ...)
    setting_and_dates: str = ""  # where and when the images were acquired
    eligibility: str = ""  # inclusion / exclusion criteria of the source
    series: str = ""  # consecutive, random or convenience series
    reference_standard: str = ""  # how the labels were established (histopathology, follow-up, ...)
    reference_rationale: str = ""
    blinding: str = ""  # what the readers of the index test and the reference standard knew
    annotators: str = ""  # who labelled the images, their qualifications, tools
    acquisition: str = ""  # devices, protocols
    deidentification: str = ""
    time_interval: str = ""  # between the images and the reference standard
    sample_size: str = ""  # intended sample size and how it was determined
    ethics: str = ""
    registration: str = ""
    protocol: str = ""
    funding: str = ""
    data_availability: str = ""


@dataclass(frozen=True)
class ReportSection:
    """The report bundle written into the results folder."""

    enabled: bool = True
    title: str = ""
    gradcam: int = 0  # number of test images explained per CNN / CLIP method (0: none)
    neighbours: int = 4  # most similar training images shown for each image of the error gallery (0: none)
    study: StudySection = field(default_factory=StudySection)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GateSection:
    """The medical-image gate saved with the run for ``predict``."""

    ood: bool = True  # fit an out-of-distribution check on training embeddings (threshold on validation)
    medical_prompts: str = "medical_vs_nonmedical"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrackingSection:
    """Optional MLflow tracking."""

    mlflow: bool = False
    tracking_uri: str = ""
    experiment: str = ""


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: the object ``breastclip run`` executes."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    data: DataSection = field(default_factory=DataSection)
    split: SplitSection = field(default_factory=SplitSection)
    backbones: tuple[str, ...] = (DEFAULT_BACKBONE,)
    embed: EmbedSection = field(default_factory=EmbedSection)
    methods: tuple[MethodSection, ...] = ()
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    report: ReportSection = field(default_factory=ReportSection)
    gate: GateSection = field(default_factory=GateSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    #: What ``--offline`` (or a fallback) swapped: "asked for X; Y ran" lines, carried into the notes and the report
    substitutions: tuple[str, ...] = ()

    @property
    def split_seed(self) -> int:
        return self.split.seed if self.split.seed >= 0 else self.experiment.seed

    def active_methods(self) -> list[MethodSection]:
        return [m for m in self.methods if m.enabled]

    def to_dict(self) -> dict:
        return _to_plain(self)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(_drop_empty_tables(self.to_dict()))

    def identity(self) -> str:
        """Hash of everything that changes results: not the output folder, not tracking, and not ``[report]`` (what
        the report shows and the study facts it states change no fitted model or metric, so editing them lets an
        interrupted run resume and reuse its finished methods; the report is written again at the end)."""
        d = self.to_dict()
        d["experiment"].pop("output", None)
        d["experiment"].pop("on_existing", None)
        d.pop("tracking", None)
        d.pop("report", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# path-valued keys, resolved against the config file's folder (file) or the current directory (command line)
PATH_KEYS = ("data.source", "embed.cache_dir", "experiment.output")


# ---- loading ------------------------------------------------------------------------------------------------
def load_config(
    path: str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    offline: bool = False,
    subset: int | None = None,
    only_methods: list[str] | tuple[str, ...] = (),
    raw: dict | None = None,
    base_dir: str | Path | None = None,
) -> ExperimentConfig:
    """Load a TOML experiment (or a ``raw`` dict), apply overrides, and validate every key."""
    if raw is None:
        if path is None:
            raise ConfigError("give a config file or a raw dict")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    else:
        raw = copy.deepcopy(raw)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    _resolve_paths(raw, base)
    for item in overrides:
        apply_override(raw, item, cwd=Path.cwd())
    if subset is not None:
        raw.setdefault("data", {})["subset"] = int(subset)
    cfg = from_dict(raw)
    if only_methods:  # by the names the config gives (before --offline renames a substituted method)
        cfg = select_methods(cfg, only_methods)
    if offline:
        cfg = make_offline(cfg)
    validate(cfg)
    return cfg


def from_dict(raw: dict) -> ExperimentConfig:
    """Build the dataclasses from a plain dict; unknown keys and wrong types raise :class:`ConfigError`."""
    return _build(ExperimentConfig, _lift_split_options(raw), "")


#: Keys of the [split] section that users also write under split.options (the splitter's keyword names).
SPLIT_SECTION_KEYS = ("fractions", "seed", "keep_official")


def _lift_split_options(raw: dict) -> dict:
    """``split.options.fractions`` (seed, keep_official) means ``split.fractions``: honour it wherever it is put.

    Given in both places with different values is an error rather than a silent choice.
    """
    given = raw.get("split")
    options = given.get("options") if isinstance(given, dict) else None
    if not isinstance(given, dict) or not isinstance(options, dict) or not any(k in options for k in SPLIT_SECTION_KEYS):
        return raw
    split, options = dict(given), dict(options)
    for key in SPLIT_SECTION_KEYS:
        if key not in options:
            continue
        value = options.pop(key)
        if key in split and split[key] != value:
            raise ConfigError(f"split.{key} = {split[key]!r} and split.options.{key} = {value!r} disagree: "
                              f"keep one of them")
        split[key] = value
    split["options"] = options
    return {**raw, "split": split}


def make_offline(cfg: ExperimentConfig) -> ExperimentConfig:
    """Swap every backbone for the offline one (paired with MiniLM when a method needs text).

    Methods that need a text tower *aligned* with the image space (zero-shot) cannot run on it; the pipeline skips
    them and says why in the log and the report. What each method needs, and the hyperparameters ``--offline``
    sets (the CNN baseline's architecture), come from the method registry.
    """
    # lazy: the registry imports the heads and the fine-tuning code (torch); the config stays importable without
    from breastclip.method_registry import TextUse, method_kind

    kinds = {m.name: method_kind(m.head) for m in cfg.methods}
    needs_text = any(kinds[m.name].text is TextUse.REQUIRED for m in cfg.active_methods())
    substitutions = list(cfg.substitutions)
    backbones = cfg.backbones
    # already offline (e.g. an EfficientNet-Lite feature view, "efficientnet-lite0@stages"): the backbones stay
    if not all(_offline_family(b, needs_text) for b in cfg.backbones):
        backbones = (OFFLINE_TEXT_BACKBONE if needs_text else OFFLINE_BACKBONE,)
        substitutions.append(f"--offline: backbone(s) {', '.join(cfg.backbones)} replaced by {backbones[0]} (the "
                             "config asked for the former; the results are the latter's)")
    methods = []
    for m in cfg.methods:
        offline = kinds[m.name].offline_params  # e.g. the CNN's arch: torchvision weights need a download
        changed = {k: v for k, v in offline.items() if m.params.get(k, _PARAM_DEFAULTS.get(k)) != v}
        name = m.name
        for k, v in changed.items():  # the method's name carries what actually ran
            asked = str(m.params.get(k, _PARAM_DEFAULTS.get(k)))
            name = name.replace(asked, str(v)) if asked in name else f"{name}@{v}"
            substitutions.append(f"--offline: method '{m.name}' asked for {k} = {asked}; {v} ran instead, as "
                                 f"method '{name}'")
        methods.append(dataclasses.replace(m, name=name, backbones=() if backbones != cfg.backbones else m.backbones,
                                           params={**m.params, **offline}))
    return dataclasses.replace(cfg, backbones=backbones, methods=tuple(methods),
                               substitutions=tuple(substitutions))


#: Defaults of the hyperparameters ``--offline`` may replace, to say what the config asked for when it left them out
#: (the CNN baseline's ``arch``, :class:`breastclip.finetune.FinetuneConfig`).
_PARAM_DEFAULTS = {"arch": "resnet18"}


def _offline_family(name: str, needs_text: bool = False) -> bool:
    """Whether backbone ``name`` installs from the package index alone (EfficientNet-Lite and its views), with a
    text encoder when ``needs_text``."""
    from breastclip.backbones.registry import get_entry

    try:
        entry = get_entry(name)
    except (KeyError, ValueError, FileNotFoundError):
        return False
    return entry.family == "efficientnet_lite" and (entry.has_text or not needs_text)


def select_methods(cfg: ExperimentConfig, names: list[str] | tuple[str, ...]) -> ExperimentConfig:
    """Keep only the named methods (by method name); an unknown name is an error listing the known ones."""
    known = [m.name for m in cfg.methods]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; the config defines {known}")
    return dataclasses.replace(cfg, methods=tuple(m for m in cfg.methods if m.name in names))


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Cross-field checks that the dataclasses alone cannot express."""
    problems = []
    if not cfg.data.source:
        problems.append("data.source is empty: name the data folder or file (or --set data.source=PATH)")
    if cfg.data.subset < 0:
        problems.append(f"data.subset must be >= 0, got {cfg.data.subset}")
    fr = cfg.split.fractions
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        problems.append(f"split.fractions must be three non-negative numbers summing to 1, got {list(fr)}")
    if cfg.split.on_leak not in ("refuse", "warn"):
        problems.append(f"split.on_leak must be 'refuse' or 'warn', got '{cfg.split.on_leak}'")
    if cfg.experiment.on_existing not in ("auto", "new", "refuse"):
        problems.append(f"experiment.on_existing must be auto, new or refuse, got '{cfg.experiment.on_existing}'")
    if not cfg.backbones:
        problems.append("backbones is empty: name at least one (e.g. backbones = [\"efficientnet-lite0\"])")
    if not cfg.active_methods():
        problems.append("no enabled method: add a [[methods]] table")
    names = [m.name for m in cfg.methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"method names must be unique; repeated: {dup}")
    for i, m in enumerate(cfg.methods):
        if not m.name or not m.head:
            problems.append(f"methods[{i}] needs both 'name' and 'head' (got name='{m.name}', head='{m.head}')")
        stray = [b for b in m.backbones if b not in cfg.backbones]
        if stray:
            problems.append(f"method '{m.name}' lists backbones {stray} that are not in backbones {list(cfg.backbones)}")
    if cfg.evaluation.primary_metric not in HEADLINE_METRICS:
        problems.append(f"evaluation.primary_metric '{cfg.evaluation.primary_metric}' is not a headline metric; "
                        f"choose one of {', '.join(HEADLINE_METRICS)}")
    if not 0 < cfg.evaluation.ci < 1:
        problems.append(f"evaluation.ci must be in (0, 1), got {cfg.evaluation.ci}")
    tiles = cfg.embed.options.get("tiles")
    bags = isinstance(tiles, dict) and tiles.get("pool") == "bag"
    for m in cfg.active_methods():
        if m.head == "attention_mil" and bags and "tile_dim" not in m.params:
            problems.append(f"method '{m.name}': embed.options.tiles.pool = \"bag\" lays each image's tiles side by "
                            f"side; set methods.{m.name}.params.tile_dim to the backbone's embedding width (e.g. "
                            "1280 for efficientnet-lite0) so the attention-MIL head can tell the tiles apart")
    if cfg.evaluation.level not in ("image", "breast", "exam"):
        problems.append(f"evaluation.level must be 'image', 'breast' or 'exam', got '{cfg.evaluation.level}'")
    if cfg.evaluation.aggregate not in ("mean", "max", "noisy_or"):
        problems.append(f"evaluation.aggregate must be 'mean', 'max' or 'noisy_or', got '{cfg.evaluation.aggregate}'")
    if any(not 0 < f <= 1 for f in cfg.experiment.label_fractions):
        problems.append(f"experiment.label_fractions must be in (0, 1], got {list(cfg.experiment.label_fractions)}")
    if any(n < 1 for n in cfg.experiment.shots):
        problems.append(f"experiment.shots must be positive integers, got {list(cfg.experiment.shots)}")
    if cfg.evaluation.selection not in SELECTION_SOURCES:
        problems.append(f"evaluation.selection must be one of {', '.join(SELECTION_SOURCES)}, got "
                        f"'{cfg.evaluation.selection}'")
    if cfg.evaluation.cv_splits < 2 or cfg.evaluation.cv_repeats < 1 or cfg.evaluation.cv_jobs == 0:
        problems.append(f"evaluation.cv_splits must be >= 2, cv_repeats >= 1 and cv_jobs != 0; got "
                        f"{cfg.evaluation.cv_splits}, {cfg.evaluation.cv_repeats}, {cfg.evaluation.cv_jobs}")
    for m in cfg.methods:
        bad = [k for k, v in m.params_grid.items() if not isinstance(v, (list, tuple)) or not v]
        if bad:
            problems.append(f"method '{m.name}': params_grid.{bad[0]} must be a non-empty list of values")
        both = sorted(set(m.params_grid) & set(m.params))
        if both:
            problems.append(f"method '{m.name}': {both} set in both params and params_grid; keep one")
        if m.params_grid and cfg.evaluation.selection != "cv":
            problems.append(f"method '{m.name}' has a params_grid, which only evaluation.selection = \"cv\" "
                            f"searches (it is \"{cfg.evaluation.selection}\")")
    if cfg.evaluation.n_bootstrap < 0:
        problems.append(f"evaluation.n_bootstrap must be >= 0, got {cfg.evaluation.n_bootstrap}")
    if problems:
        raise ConfigError("invalid experiment config:\n- " + "\n- ".join(problems))
    return cfg


# ---- overrides ----------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A TOML value (``3``, ``true``, ``["a", "b"]``, ``"x"``); anything else is the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict, item: str, *, cwd: Path | None = None) -> dict:
    """Apply one ``key.path=value`` override to a raw config dict, in place."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key.path=value")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = [p for p in key.split(".") if p]
    if not parts:
        raise ConfigError(f"override '{item}' has an empty key")
    value = parse_value(text.strip())
    is_bank = (parts[0] == "methods" and parts[-1] == "prompts") or key == "gate.medical_prompts"
    if (key in PATH_KEYS and isinstance(value, str) and value) or (is_bank and _is_bank_file(value)):
        value = str(_absolute(value, cwd or Path.cwd()))
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = _method_by_name(node, part, where)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{where}' is not a table")
        node = node.setdefault(part, {}) if part != "methods" else node.setdefault(part, [])
    last = parts[-1]
    if isinstance(node, list):
        raise ConfigError(f"override '{item}': address a method field, e.g. methods.<name>.params.<key>=value")
    if not isinstance(node, dict):
        raise ConfigError(f"override '{item}': '{'.'.join(parts[:-1])}' is not a table")
    node[last] = value
    return raw


def _method_by_name(methods: list, part: str, where: str) -> dict:
    if part.isdigit():
        idx = int(part)
        if idx >= len(methods):
            raise ConfigError(f"override: {where} is out of range ({len(methods)} methods)")
        return methods[idx]
    for m in methods:
        if isinstance(m, dict) and m.get("name") == part:
            return m
    names = [m.get("name") for m in methods if isinstance(m, dict)]
    raise ConfigError(f"override: no method named '{part}' ({where}); methods are {names}")


# ---- helpers ------------------------------------------------------------------------------------------------
def _absolute(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _is_bank_file(value: Any) -> bool:
    """A prompt-bank value that names a file (``my_bank.toml``, ``banks/x.json``, ``./x``), not a shipped bank."""
    if not isinstance(value, str) or not value:
        return False
    return Path(value).suffix.lower() in (".toml", ".json") or "/" in value or "\\" in value


def _resolve_paths(raw: dict, base: Path) -> None:
    for key in PATH_KEYS:
        section, name = key.split(".")
        sec = raw.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(name), str) and sec[name]:
            sec[name] = str(_absolute(sec[name], base))
    # prompt-bank files: relative to the config file too (shipped bank names are left as they are)
    for m in raw.get("methods") or []:
        if isinstance(m, dict) and _is_bank_file(m.get("prompts")):
            m["prompts"] = str(_absolute(m["prompts"], base))
    gate = raw.get("gate")
    if isinstance(gate, dict) and _is_bank_file(gate.get("medical_prompts")):
        gate["medical_prompts"] = str(_absolute(gate["medical_prompts"], base))


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where or 'config'}' must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key '{path}'{hint}; valid keys{' in [' + where + ']' if where else ''}: "
                              f"{', '.join(valid)}")
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}' must be a list, got {value!r}")
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            return tuple(_build(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
        return tuple(_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{path}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{path}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{path}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{path}' must be a string, got {value!r}")
        return value
    if isinstance(tp, types.UnionType) or origin is typing.Union:  # pragma: no cover - not used by the sections
        return value
    return value


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    return obj


def _drop_empty_tables(d: dict) -> dict:
    """TOML cannot hold None; empty tables are kept (they document the available sections)."""
    out = {}
    for k, v in d.items():
        if v is None:
            continue
        out[k] = _drop_empty_tables(v) if isinstance(v, dict) else v
    order = ["backbones", "substitutions", "experiment", "data", "split", "embed", "methods", "evaluation", "report",
             "gate", "tracking"]
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
