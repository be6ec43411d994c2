"""Which variant a run is: the registered configuration's label, custom-<hash>, or a checked user name."""

from __future__ import annotations

import pytest

from sbir_bench.cli import main
from sbir_bench.config import ConfigError, available, compose, config_hash
from sbir_bench.variant import registered_labels, resolve_variant


def test_registered_configurations_keep_their_label():
    default = resolve_variant(compose([]))
    assert default.name == "default" and default.is_registered
    # non-identity overrides (paths, seeds, logger, devices, splits) leave a run the registered one
    same = resolve_variant(
        compose(["data=synthetic_zs", "seeds=[1,2]", "paths.cache_dir=/elsewhere", "logger=none"])
    )
    assert same == default
    paper = resolve_variant(compose(["experiment=cvae_paper"]))
    assert paper.name == "paper" and paper.is_registered and paper.config_hash != default.config_hash
    assert {"default", "paper"} <= registered_labels()


def test_any_other_override_makes_a_custom_variant_named_by_its_hash():
    cfg = compose(["method.max_epochs=2"])
    variant = resolve_variant(cfg)
    assert variant.name == f"custom-{config_hash(cfg)}" and not variant.is_registered
    assert (variant.registered_variant, variant.registered_hash) == ("default", config_hash(compose([])))
    from_paper = resolve_variant(compose(["experiment=cvae_paper", "method.max_epochs=2"]))
    assert from_paper.name.startswith("custom-") and from_paper.registered_variant == "paper"


def test_a_method_config_other_than_the_methods_own_is_registered_only_through_an_experiment():
    variant = resolve_variant(compose(["method=cvae_paper"]))
    assert variant.name == f"custom-{variant.config_hash}" and not variant.is_registered
    with pytest.raises(ConfigError, match=r"method=cvae_paper .* is registered only through an experiment"):
        resolve_variant(compose(["method=cvae_paper", "variant=default"]))


def test_a_user_may_name_a_variant():
    variant = resolve_variant(compose(["variant=short_run", "method.max_epochs=2"]))
    assert variant.name == "short_run" and variant.registered_variant == "default"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["variant=default", "method.max_epochs=2"],
            r"variant 'default' is the label of a registered configuration.*"
            r"it differs in method.max_epochs: 100 -> 2\). Leave variant unset \(the run becomes custom-",
        ),
        (
            ["variant=paper"],
            r"'paper' is the label of another registered configuration.*registered .* 'default'",
        ),
        (
            ["experiment=cvae_paper", "variant=default"],
            r"this run is the one registered for experiment=cvae_paper",
        ),
        (["variant=a/b"], r"variant 'a/b' is not a plain name"),
        (["variant=custom-0000000000"], r"names starting with 'custom-' are given by the suite"),
    ],
)
def test_bad_variants_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_variant(compose(overrides))


def test_bench_refuses_a_registered_label_before_running_anything(tmp_path, capsys):
    paths = [f"paths.results_dir={tmp_path / 'results'}", f"paths.output_dir={tmp_path / 'outputs'}"]
    code = main(["bench", "variant=default", "method.max_epochs=2", "logger=none", *paths])
    assert code == 2
    assert "variant 'default' is the label of a registered configuration" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "outputs").exists(), "nothing written"


def test_the_data_configs_of_one_dataset_are_one_configuration():
    """A row joins a dataset's settings (traditional, zero-shot, gzs) under one config hash: the data configs
    of a dataset may differ only in non-identity keys (which splits a command runs)."""
    hashes: dict[str, set[str]] = {}
    for data in available("data"):
        cfg = compose([f"data={data}"])
        hashes.setdefault(str(cfg.data.dataset), set()).add(config_hash(cfg))
    assert {dataset: len(found) for dataset, found in hashes.items() if len(found) > 1} == {}


def test_bench_labels_the_runs_of_another_configuration_custom(tmp_path, monkeypatch):
    import sbir_bench.runner as runner

    calls = []
    monkeypatch.setattr(
        runner, "run_one", lambda cfg, **kwargs: calls.append((cfg.variant, kwargs)) or (None, None)
    )
    (tmp_path / "results").mkdir()
    paths = [
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.leaderboard_dir={tmp_path / 'board'}",
        f"paths.output_dir={tmp_path / 'outputs'}",  # the run's lock file goes beside its run folder
    ]
    cfg = compose(["data=synthetic_zs", "method.max_epochs=2", *paths])
    runner.bench(cfg)
    ((label, kwargs),) = calls
    assert label == f"custom-{config_hash(cfg)}" == kwargs["variant"].name
    assert (kwargs["variant"].registered_variant, kwargs["variant"].registered_hash) == (
        "default",
        config_hash(compose(["data=synthetic_zs"])),
    )
