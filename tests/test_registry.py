from __future__ import annotations

import pytest

from sbir_bench.registry import METHODS, Registry, UnknownNameError, list_datasets, list_methods


def test_builtin_names_are_registered():
    assert {"baseline", "cvae"} <= set(list_methods())
    assert "synthetic" in list_datasets()


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownNameError, match="unknown method 'nope'; known methods: .*cvae"):
        METHODS.get("nope")


def test_duplicate_registration_fails_and_patterns_filter():
    registry: Registry[object] = Registry("thing")
    registry.register("a_one")(object)
    registry.register("b_two")(int)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a_one")(str)
    assert registry.names("a_*") == ["a_one"]
    assert registry.create("b_two") == 0
