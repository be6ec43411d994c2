"""Config composition (Hydra's compose API) and the identity hash of a run's configuration.

We compose instead of using ``@hydra.main`` so that one process can loop over splits and seeds, the CLI
keeps its own sub-commands, and Lightning's DDP launcher can re-run the exact same command line on
every rank (Hydra multirun combined with DDP breaks; one job per run with an explicit run directory).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR_ENV = "SBIR_CONFIG_DIR"
SEARCHPATH_ENV = "SBIR_CONFIG_SEARCHPATH"
# Keys that change how a run is executed or logged, never what it computes: left out of its identity.
# Overriding any other key makes a run a variant of its own (sbir_bench/variant.py, leaderboard/README.md).
# (The variant label, the split and the seed are identity fields of their own; DDP/device choices are
# recorded, not hashed.)
NON_IDENTITY_KEYS = (
    "variant",  # the row label: a record field of its own, so custom-<hash> can name the hash
    "overrides",  # the command line's overrides, kept by compose() as provenance
    "configured_paths",  # the paths group before interpolation, kept by compose() for records
    "seeds",
    "force",
    "resume",
    "to_leaderboard",  # false for debug runs, which never reach the leaderboard
    "rebuild_leaderboard",  # false in the runs of sbir-bench bench-all, which rebuilds it once at the end
    "logger",
    # display-only callbacks; early stopping changes what a run computes and stays in. The best checkpoint's
    # monitor and mode follow evaluation.monitor (the runner refuses others)
    "callbacks.model_checkpoint",
    "callbacks.rich_progress_bar",
    "callbacks.model_summary",
    "callbacks.learning_rate_monitor",
    "trainer.enable_model_summary",
    "trainer.profiler",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.num_sanity_val_steps",
    "paths",
    "data.root",  # where a dataset lies on this machine; the records carry its counts
    "data.dataset_kwargs.root",
    "data.splits",
    "data.num_workers",
    "data.eval_batch_size",
    "data.feature_batch_size",
    "evaluation.grid_queries",
)


class ConfigError(ValueError):
    """A config name, override or value is wrong; the message says which and what is known."""


def config_dir() -> Path:
    """The configs folder: ``$SBIR_CONFIG_DIR``, else the one shipped inside the package
    (``sbir_bench/configs`` of a wheel), else the checkout's ``configs/`` (editable install)."""
    package = Path(__file__).resolve().parent
    if CONFIG_DIR_ENV in os.environ:
        path = Path(os.environ[CONFIG_DIR_ENV])
    elif (package / "configs" / "bench.yaml").is_file():
        path = package / "configs"
    else:
        path = package.parent / "configs"
    if not (path / "bench.yaml").is_file():
        raise ConfigError(
            f"no bench.yaml in config folder {path}; set {CONFIG_DIR_ENV} to the repo's configs/"
        )
    return path


def search_path() -> list[Path]:
    """Folders of a lab's own configs (``$SBIR_CONFIG_SEARCHPATH``, separated like ``$PATH``): their
    ``method/mine.yaml`` is chosen with ``method=mine``, beside the suite's configs."""
    return [Path(part) for part in os.environ.get(SEARCHPATH_ENV, "").split(os.pathsep) if part]


def config_folders() -> list[Path]:
    """Every folder configs are read from: the suite's, then the search path's."""
    return [config_dir(), *search_path()]


def available(group: str) -> list[str]:
    """Names of the configs of one group (e.g. ``method``), from the files in <folder>/<group>/."""
    return sorted({p.stem for folder in config_folders() for p in (folder / group).glob("*.yaml")})


def config_values(group: str, key: str) -> list[str]:
    """The values of top-level ``key`` in a group's configs (``config_values("data", "dataset")``: the
    datasets the data configs read), read as plain YAML without composing."""
    import yaml

    values = set()
    for folder in config_folders():
        for path in (folder / group).glob("*.yaml"):
            content = yaml.safe_load(path.read_text()) or {}
            if isinstance(content, dict) and isinstance(content.get(key), str):
                values.add(content[key])
    return sorted(values)


def entry_point_names(group: str) -> list[str]:
    """Names installed packages register under an entry-point ``group``, without importing them."""
    from importlib.metadata import entry_points

    return sorted(entry.name for entry in entry_points(group=group))


def compose(
    overrides: list[str] | tuple[str, ...] = (), config_name: str = "bench", check: bool = True
) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides; raise ConfigError on any mistake.

    The overrides are kept in the config (key ``overrides``, not part of the identity): they tell which
    registered configuration a run started from (:func:`sbir_bench.variant.resolve_variant`). So is the
    ``paths`` group as configured, before interpolation (key ``configured_paths``): records keep that
    (e.g. ``${oc.env:SBIR_CACHE,.cache/sbir_bench}``), never the machine path it resolved to. With
    ``check``, every value Lightning or the evaluation would refuse later is refused now
    (:func:`sbir_bench.config_checks.check_config`, without importing Lightning). A method config's
    ``default_data`` (e.g. ``synthetic_fg`` for a fine-grained method) is the data config used when the
    overrides choose none.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sbir_bench.config_checks import check_config, composition_error

    searched = [f"file://{folder.resolve()}" for folder in search_path()]
    extra = [f"hydra.searchpath=[{','.join(searched)}]"] if searched else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=[*extra, *overrides])
        configured_paths = _escaped(cfg.get("paths"))
        OmegaConf.resolve(cfg)  # e.g. an ${oc.env:NAME} whose variable is not set
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(composition_error(error, list(overrides))) from error
    default_data = cfg.get("method", {}).get("default_data")
    if default_data and not _chooses_data(overrides):
        # the method's own track (e.g. a fine-grained method: synthetic_fg) unless data= was given
        return compose([*overrides, f"data={default_data}"], config_name, check)
    with open_dict(cfg):
        cfg.overrides = list(overrides)
        cfg.configured_paths = configured_paths
    OmegaConf.set_struct(cfg, True)
    if check:
        check_config(cfg)
    return cfg


def _chooses_data(overrides: list[str] | tuple[str, ...]) -> bool:
    return any(o.partition("=")[0].lstrip("+~") == "data" for o in overrides)


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """Keep the resolved config (``config.yaml``) and the command line's overrides (``overrides.yaml``)
    in a run folder, as a Hydra run folder's ``.hydra/`` does; atomic writes, as every DDP rank calls it."""
    from sbir_bench.files import atomic_write_text

    # compose() resolved it already; configured_paths stays escaped, so the file loads back equal
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    overrides = OmegaConf.create(list(cfg.get("overrides", [])))
    atomic_write_text(run_dir / "overrides.yaml", OmegaConf.to_yaml(overrides))


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _escaped(paths: DictConfig | None) -> dict[str, Any] | None:
    """The group's values with interpolations escaped (``\\${...}``): resolved, the copy gives the text as
    configured."""
    if paths is None:
        return None
    raw = OmegaConf.to_container(paths, resolve=False)
    return {key: v.replace("${", "\\${") if isinstance(v, str) else v for key, v in raw.items()}


def record_config(cfg: DictConfig) -> dict[str, Any]:
    """The config a record keeps: resolved, but ``paths`` as configured (e.g. ``${oc.env:SBIR_CACHE,...}``),
    so a record names no machine path the environment chose."""
    config = to_container(cfg)
    configured = config.pop("configured_paths", None)
    if configured is not None:
        config["paths"] = configured
    return config


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The part of a config that defines what a run computes: every key but :data:`NON_IDENTITY_KEYS`."""
    identity = to_container(cfg)
    for dotted in NON_IDENTITY_KEYS:
        *parents, leaf = dotted.split(".")
        node = identity
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    if not identity.get("callbacks", True):
        identity.pop("callbacks")  # display-only callbacks: runs keep the hash they had before callbacks/
    trainer = identity.get("trainer", {})
    for key in [k for k, v in trainer.items() if v is None and k != "max_epochs"]:
        trainer.pop(key)  # an option left at null is Lightning's default, as if it were not listed
    semantics = identity.get("data", {}).get("semantics")
    if isinstance(semantics, dict) and all(value is None for value in semantics.values()):
        # the dataset's own side information, as before the option existed: earlier runs keep their hash
        identity["data"].pop("semantics")
    return identity


def config_hash(cfg: DictConfig) -> str:
    """Short stable hash of what a run computes (method, data, evaluation), not how it is run or labelled."""
    blob = json.dumps(identity(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
