"""A lab's own method, without editing registry.py: an entry point of group ``sbir_bench.methods``, or a
method config whose ``_target_`` names the class."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import pytest
from PIL import Image

from sbir_bench.config import CONFIG_DIR_ENV, compose, config_dir
from sbir_bench.config_checks import object_problems
from sbir_bench.leaderboard.record import read_record
from sbir_bench.methods.baseline import Baseline
from sbir_bench.registry import METHOD_ENTRY_POINTS, METHODS, UnknownNameError, method_class
from sbir_bench.runner import bench

from .conftest import TINY_DATA, quiet_run_in


class LabMethod(Baseline):
    """Stands for a method class in a lab's own package (here: the backbone features, negated)."""

    def embed_query(self, x):
        return -x

    def embed_gallery(self, x):
        return -x

    def summary_images(self, datamodule):
        return {"lab_picture": (Image.new("RGB", (4, 3), "red"), "what the lab method learned")}


LAB_CONFIG = f"""# a lab's method config: the class by dotted path
_target_: {__name__}.LabMethod
name: lab_method
max_epochs: 0
batch_size: 64
kwargs: {{}}
"""


def test_an_entry_point_registers_a_method(monkeypatch):
    lab = importlib.metadata.EntryPoint(
        name="lab_method", value=f"{__name__}:LabMethod", group=METHOD_ENTRY_POINTS
    )
    original = importlib.metadata.entry_points

    def entry_points(**selection):
        if selection.get("group") == METHOD_ENTRY_POINTS:
            return importlib.metadata.EntryPoints([lab])
        return original(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(METHODS, "_loaded", False)
    assert METHODS.get("lab_method") is LabMethod
    assert {"baseline", "cvae", "lab_method"} <= set(METHODS.names())
    assert method_class({"name": "lab_method"}) is LabMethod


def test_a_broken_entry_point_or_target_fails_with_one_clear_line(monkeypatch):
    broken = importlib.metadata.EntryPoint(
        name="gone", value="no_such_lab.methods:Gone", group=METHOD_ENTRY_POINTS
    )
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda **s: importlib.metadata.EntryPoints([broken])
    )
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(METHODS, "_loaded", False)
    with pytest.raises(ImportError, match="'gone' .*no_such_lab.methods:Gone.*cannot be loaded"):
        METHODS.get("gone")
    with pytest.raises(UnknownNameError, match="cannot be imported"):
        method_class({"_target_": "no_such_lab.Method", "name": "x"})
    with pytest.raises(UnknownNameError, match="not a RetrievalMethod"):
        method_class({"_target_": "collections.OrderedDict", "name": "x"})


def test_a_target_method_config_in_a_lab_config_folder_runs(tmp_path, shared_cache, monkeypatch):
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "method" / "lab.yaml").write_text(LAB_CONFIG)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(configs))
    cfg = compose(["method=lab", "data=synthetic_zs", *quiet_run_in(tmp_path, shared_cache), *TINY_DATA])
    assert method_class(cfg.method) is LabMethod
    assert object_problems(cfg) == [], "the command line's checks accept it: no registration needed"
    (path,) = bench(cfg).written
    assert path.parent.name == "lab_method"  # records, run folders and rows carry the config's name
    record = read_record(path)
    picture = Path(record.extra["run_dir"]) / "lab_picture.png"
    with Image.open(picture) as image:  # a method's summary images lie beside its run
        assert image.size == (4, 3)
    # or from the command line, on any method config
    override = compose([f"+method._target_={__name__}.LabMethod", "method=baseline"])
    assert method_class(override.method) is LabMethod
