"""Fixtures shared by the data tests."""

from __future__ import annotations

import pytest

from sbir_bench.data import backbones


@pytest.fixture
def forward_calls(monkeypatch) -> list[int]:
    """The batch size of every forward call of the backbones the feature code builds."""
    seen: list[int] = []
    original = backbones.create_backbone

    def counting(spec):
        model = original(spec)
        model.register_forward_hook(lambda module, args, output: seen.append(len(args[0])))
        return model

    monkeypatch.setattr(backbones, "create_backbone", counting)
    return seen
