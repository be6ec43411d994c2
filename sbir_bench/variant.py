"""Which configuration a run is: a registered one (``default``, an experiment's ``paper``) or a variant.

A registered configuration is what the config-group choices alone compose to (``method=``, ``data=``,
``experiment=``, ``trainer=``, ``logger=``, ... without value overrides), where the method config is the
method's own (``method=cvae``) or an experiment chooses it: ``method=cvae_paper`` alone is not registered
(the published sizes are registered as ``experiment=cvae_paper``, label ``paper``). A run whose
configuration hash (:func:`sbir_bench.config.config_hash`: every key outside ``NON_IDENTITY_KEYS``)
differs from it, or that is not registered, is a variant of its own: named by the user (``variant=NAME``)
or ``custom-<config_hash>`` by default, so its records never land in the registered configuration's
leaderboard row. A registered label on another configuration, a ``custom-`` name that is not the run's
own hash and a name that is not plain are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml
from omegaconf import DictConfig

from sbir_bench.config import ConfigError, compose, config_dir, config_hash, identity

CUSTOM_PREFIX = "custom-"
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a variant becomes a file-name component
MAX_LISTED_KEYS = 8


@dataclass(frozen=True)
class Variant:
    """The label a run's records carry, and the registered configuration it was composed from."""

    name: str
    config_hash: str
    registered_variant: str
    registered_hash: str
    is_registered: bool  # the run is the registered configuration (whatever its label)


def registered_labels() -> set[str]:
    """Labels of the registered configurations: bench.yaml's ``variant`` and every experiment's."""
    files = [config_dir() / "bench.yaml", *sorted((config_dir() / "experiment").glob("*.yaml"))]
    labels = set()
    for path in files:
        label = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("variant")
        if isinstance(label, str):
            labels.add(label)
    return labels


def group_overrides(overrides: list[str]) -> tuple[list[str], dict[str, str], bool]:
    """The overrides that choose a config group (``data=synthetic_zs``), the choices by group, and whether
    ``variant`` is set."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups, choices, variant_set = [], {}, False
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key == "variant":
            variant_set = True
        elif key == "hydra.searchpath" or (config_dir() / key).is_dir():  # where a lab's configs lie
            groups.append(override.input_line)
            choices[key] = str(override.value())
    return groups, choices, variant_set


def differing_keys(registered: DictConfig, actual: DictConfig) -> list[str]:
    """``key: old -> new`` for every identity key whose value differs between two configs."""

    def flat(node: object, prefix: str = "") -> dict[str, object]:
        if not isinstance(node, dict):
            return {prefix[:-1]: node}
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out

    before, after = flat(identity(registered)), flat(identity(actual))
    return [
        f"{key}: {before.get(key, '(absent)')!r} -> {after.get(key, '(absent)')!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key, KeyError) != after.get(key, KeyError)
    ]


def resolve_variant(cfg: DictConfig) -> Variant:
    """The variant of the composed ``cfg`` (from :func:`sbir_bench.config.compose`); ConfigError on a bad
    ``variant``. Unset: the registered label when the configuration is the registered one, otherwise
    ``custom-<config_hash>``. Set by the user: any plain name but another configuration's registered
    label or a ``custom-`` name other than the run's own."""
    if "overrides" not in cfg:
        raise ConfigError(
            "the config does not say how it was composed: build it with sbir_bench.config.compose"
        )
    groups, choices, variant_set = group_overrides(list(cfg.overrides))
    registered = compose(groups)
    actual_hash, registered_hash = config_hash(cfg), config_hash(registered)
    registered_label = str(registered.variant)
    method_choice = choices.get("method", registered.method.name)
    foreign_method = method_choice != registered.method.name and "experiment" not in choices
    is_registered = actual_hash == registered_hash and not foreign_method
    name = str(cfg.variant)
    if not variant_set:
        name = registered_label if is_registered else f"{CUSTOM_PREFIX}{actual_hash}"
    elif not PLAIN_NAME.match(name):
        raise ConfigError(
            f"variant {name!r} is not a plain name (letters, digits, '_', '.', '+', '-'; it names files)"
        )
    elif name.startswith(CUSTOM_PREFIX) and name != f"{CUSTOM_PREFIX}{actual_hash}":
        raise ConfigError(
            f"variant {name!r}: names starting with {CUSTOM_PREFIX!r} are given by the suite; this "
            f"configuration's is {CUSTOM_PREFIX}{actual_hash} (leave variant unset for it, or choose a name)"
        )
    elif name in registered_labels() and (name != registered_label or not is_registered):
        chosen = " ".join(groups) or "the defaults"
        if foreign_method:
            raise ConfigError(
                f"variant {name!r} is the label of a registered configuration, and method={method_choice} "
                f"(a config of method {registered.method.name!r} other than its own) is registered only "
                "through an experiment (e.g. experiment=cvae_paper for the published CVAE sizes). Leave "
                f"variant unset (the run becomes {CUSTOM_PREFIX}{actual_hash}) or choose another name"
            )
        if actual_hash == registered_hash:
            raise ConfigError(
                f"variant {name!r} is the label of another registered configuration; this run is the one "
                f"registered for {chosen} as {registered_label!r} (config hash {actual_hash}): leave variant "
                "unset or choose another name"
            )
        changes = differing_keys(registered, cfg)
        listed = "; ".join(changes[:MAX_LISTED_KEYS]) + (" ..." if len(changes) > MAX_LISTED_KEYS else "")
        raise ConfigError(
            f"variant {name!r} is the label of a registered configuration, and this run's configuration "
            f"(config hash {actual_hash}) is not the one registered for {chosen} (label "
            f"{registered_label!r}, config hash {registered_hash}; it differs in {listed}). Leave variant "
            f"unset (the run becomes "
            f"{CUSTOM_PREFIX}{actual_hash}) or choose another name"
        )
    return Variant(name, actual_hash, registered_label, registered_hash, is_registered)
