"""Checks of a composed config before any data work: one line per problem, with a did-you-mean.

Two stages. :func:`check_config` reads the config alone and imports nothing heavy (Lightning's Trainer
parameters are read from its source with :mod:`ast`), so a typo fails in about a second:
Trainer options, metric names, the monitored metric, seeds, splits, logger options.
:func:`check_objects` then imports what the config names: every ``_target_`` (importable, its keys
accepted by its signature) and the registered method and dataset; it may import Lightning.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from sbir_bench.config import ConfigError, available, compose, config_folders

# Hydra's own keys of an instantiable node (https://hydra.cc/docs/advanced/instantiate_objects/overview/)
HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
# W&B modes a logger config may ask for (sbir_bench/loggers.py resolves auto; dryrun is W&B's old offline)
WANDB_MODES = ("auto", "online", "offline", "disabled")


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean `prefix+match`?"`` for the closest known name, else ``""``."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


@lru_cache(maxsize=1)
def trainer_parameters() -> frozenset[str]:
    """The keyword parameters of ``lightning.Trainer.__init__``, read from its source without importing
    Lightning (which takes seconds); imported only when the source is not where it is expected."""
    spec = importlib.util.find_spec("lightning")
    source = (
        Path(spec.submodule_search_locations[0]) / "pytorch" / "trainer" / "trainer.py"
        if spec is not None and spec.submodule_search_locations
        else None
    )
    if source is not None and source.is_file():
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == "Trainer":
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        arguments = item.args.args[1:] + item.args.kwonlyargs
                        return frozenset(argument.arg for argument in arguments)
    import lightning as L

    return frozenset(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


def _trainer_problems(trainer: DictConfig) -> list[str]:
    known = trainer_parameters()
    return [
        f"unknown trainer option {key}{did_you_mean(str(key), known)}"
        for key in trainer
        if str(key) not in known and str(key) not in HYDRA_KEYS
    ]


def _evaluation_problems(evaluation: DictConfig) -> list[str]:
    from sbir_bench.evaluation.metrics import CURVE_CONVENTIONS, parse_metric

    metrics = evaluation.get("metrics")
    if not isinstance(metrics, ListConfig) or not metrics:
        return ["evaluation.metrics must be a non-empty list of metric names, e.g. [map@200, p@200]"]
    problems = []
    for name in metrics:
        try:
            parse_metric(str(name))
        except ValueError as error:
            problems.append(f"evaluation.metrics: {error}")
    monitor = evaluation.get("monitor")
    if monitor not in list(metrics):
        problems.append(
            f"evaluation.monitor {monitor} (the validation metric that selects the checkpoint) is not "
            f"among evaluation.metrics ({', '.join(map(str, metrics))})"
            + did_you_mean(str(monitor), map(str, metrics))
        )
    curve = evaluation.get("pr_curve", "voc")
    if curve not in CURVE_CONVENTIONS:
        problems.append(f"evaluation.pr_curve {curve!r}: expected one of {', '.join(CURVE_CONVENTIONS)}")
    if not isinstance(evaluation.get("class_mean", False), bool):
        problems.append(f"evaluation.class_mean must be true or false, got {evaluation.get('class_mean')!r}")
    return problems


def _logger_problems(logger: Any) -> list[str]:
    """The W&B mode of every WandbLogger node (``logger.<node>.mode``), checked before anything is built;
    the other keys of a logger node are checked against its class by :func:`check_objects`."""
    if not isinstance(logger, DictConfig):
        return []
    problems = []
    for name, node in logger.items():
        is_wandb = isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("WandbLogger")
        mode = node.get("mode") if is_wandb else None
        if mode is not None and mode not in (*WANDB_MODES, "dryrun"):
            problems.append(f"logger.{name}.mode {mode} is none of {', '.join(WANDB_MODES)}")
    return problems


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of ``cfg`` that shows without importing what it names, one line each."""
    problems = []
    if isinstance(cfg.get("trainer"), DictConfig):
        problems += _trainer_problems(cfg.trainer)
    if isinstance(cfg.get("evaluation"), DictConfig):
        problems += _evaluation_problems(cfg.evaluation)
    seeds = cfg.get("seeds")
    if not isinstance(seeds, ListConfig) or not seeds or not all(_is_int(seed) for seed in seeds):
        problems.append(f"seeds must be a non-empty list of integers, e.g. seeds=[0,1,2], not {seeds}")
    splits = OmegaConf.select(cfg, "data.splits")
    if not isinstance(splits, ListConfig) or not splits or not all(isinstance(s, str) for s in splits):
        problems.append(f"data.splits must be a non-empty list of split names, not {splits}")
    problems += _logger_problems(cfg.get("logger"))
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig) -> None:
    """Raise one ConfigError naming every problem :func:`config_problems` finds (one line each)."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))


def _instantiable(node: Any, where: str) -> Iterator[tuple[str, DictConfig]]:
    """Every mapping with a ``_target_`` in ``node``, with its dotted place."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield where, node
        for key in node:
            yield from _instantiable(node._get_node(key), f"{where}.{key}" if where else str(key))
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            yield from _instantiable(item, f"{where}[{index}]")


def _target_problems(where: str, node: DictConfig) -> list[str]:
    from hydra.utils import get_object

    target = str(node._target_)
    try:
        obj = get_object(target)
    except Exception as error:  # noqa: BLE001 - any import failure is the config's problem to report
        return [f"{where}._target_: cannot import {target} ({type(error).__name__}: {error})"]
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # no signature to compare with (some builtins)
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []
    accepted = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    return [
        f"unknown option {where}.{key} of {target}{did_you_mean(str(key), accepted, f'{where}.')}"
        for key in node
        if str(key) not in HYDRA_KEYS and str(key) not in accepted
    ]


def object_problems(cfg: DictConfig) -> list[str]:
    """Problems of what ``cfg`` names: ``_target_`` nodes, the method, the dataset (imports them)."""
    from sbir_bench.registry import DATASETS, UnknownNameError, method_class

    problems = []
    for where, node in _instantiable(cfg, ""):
        if where != "method":  # the method node is not built from its keys: method_class() below
            problems += _target_problems(where, node)
    method = cfg.get("method")
    if isinstance(method, DictConfig) and (method.get("_target_") or method.get("name") is not None):
        try:
            method_class(method)  # its _target_ (no registration needed) or its registered name
        except UnknownNameError as error:
            problems.append(f"method{'._target_' if method.get('_target_') else '.name'}: {error}")
    name = OmegaConf.select(cfg, "data.dataset")
    if name is not None:
        try:
            DATASETS.get(str(name))
        except UnknownNameError as error:
            problems.append(f"data.dataset: {error}")
    return problems


def check_objects(cfg: DictConfig) -> None:
    """Raise one ConfigError naming every problem :func:`object_problems` finds (one line each)."""
    problems = object_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))


def composition_error(error: Exception, overrides: list[str]) -> str:
    """Hydra's composition error as one line for the user, without its config search path dump."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        known = ", ".join(error.options or available(group)) if group else ""
        where = f" in group {group}; known: {known or '(none)'}" if group else ""
        return f"no config {name!r}{where}"
    full_key = getattr(error.__cause__, "full_key", None)
    if full_key and "not in struct" in str(error.__cause__):
        return _unknown_key(str(full_key), overrides)
    override, where = getattr(error, "override", None), getattr(error, "full_key", None)
    message = str(error).split("\nConfig search path", 1)[0].split("\nSee https://", 1)[0]
    message = " ".join(message.split("\n    full_key:", 1)[0].split())
    if override:
        return f"bad override {override!r}: {message}"
    return f"{where}: {message}" if where else message


def _unknown_key(full_key: str, overrides: list[str]) -> str:
    """``unknown trainer option max_epoch; did you mean max_epochs?`` and the like."""
    parent, _, leaf = full_key.rpartition(".")
    if parent == "trainer":  # its keys are Trainer parameters (checked): those are the names to suggest
        if leaf in trainer_parameters():
            return (
                f"trainer option {leaf} is not set by the trainer config; add it with +trainer.{leaf}=VALUE"
            )
        return f"unknown trainer option {leaf}{did_you_mean(leaf, trainer_parameters())}"
    rest = [o for o in overrides if o.partition("=")[0].lstrip("+~") != full_key]
    try:
        node = OmegaConf.select(compose(rest, check=False), parent) if parent else compose(rest, check=False)
    except ConfigError:
        node = None
    siblings = [str(key) for key in node] if isinstance(node, DictConfig) else []
    if not parent:  # a top-level key: config groups are names too (method=, data=, ...)
        groups = [p.name for folder in config_folders() for p in folder.iterdir() if p.is_dir()]
        return f"unknown option {leaf}{did_you_mean(leaf, [*siblings, *groups])}"
    hint = did_you_mean(leaf, siblings, f"{parent}.") or f" (a new key is added with +{full_key}=VALUE)"
    return f"unknown option {full_key}{hint}"
