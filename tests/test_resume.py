"""A run interrupted, then resumed from ``last.ckpt``, ends with an uninterrupted run's record and weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sbir_bench.config import compose
from sbir_bench.random_state import collect_random_states, restore_random_states
from sbir_bench.runner import _resumable_checkpoint, bench

from .conftest import TINY_DATA, quiet_run_in

# several batches per epoch, so the order of the batches matters, not only which items an epoch holds
CVAE_RUN = [
    "method=cvae",
    "data=synthetic_zs",
    "method.max_epochs=4",
    "method.batch_size=32",
    "method.kwargs.num_test_samples=4",
    *TINY_DATA,
]
INTERRUPTED_EPOCH = 2


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_restored_random_states_repeat_every_draw_and_load_with_weights_only(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.randn()  # a cached Gaussian is part of NumPy's state
    torch.save(collect_random_states(), tmp_path / "states.pt")
    first = draws()
    assert draws() != first
    restore_random_states(torch.load(tmp_path / "states.pt", weights_only=True))
    assert draws() == first


def test_an_unreadable_checkpoint_or_one_without_random_states_is_not_resumed(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    assert _resumable_checkpoint(tmp_path) is None  # nothing to resume
    (checkpoints / "last.ckpt").write_bytes(b"not a checkpoint")
    assert _resumable_checkpoint(tmp_path) is None
    torch.save({"state_dict": {}, "callbacks": {}}, checkpoints / "last.ckpt")  # as saved before the fix
    assert _resumable_checkpoint(tmp_path) is None
    complete = {"callbacks": {"RandomStateCheckpoint": {}}, "RetrievalDataModule": {}}
    torch.save(complete, checkpoints / "last.ckpt")
    assert _resumable_checkpoint(tmp_path) == str(checkpoints / "last.ckpt")


def final_weights(record: dict) -> dict[str, torch.Tensor]:
    last = Path(record["extra"]["run_dir"]) / "checkpoints" / "last.ckpt"
    return torch.load(last, map_location="cpu", weights_only=True)["state_dict"]


def test_a_resumed_run_reproduces_the_uninterrupted_record(tmp_path, shared_cache, monkeypatch):
    from sbir_bench.methods.cvae import CVAE

    uninterrupted = bench(compose([*CVAE_RUN, *quiet_run_in(tmp_path / "uninterrupted", shared_cache)]))
    expected = json.loads(uninterrupted.written[0].read_text())

    interrupted_dir = tmp_path / "interrupted"
    overrides = [*CVAE_RUN, *quiet_run_in(interrupted_dir, shared_cache)]
    epochs_run: list[int] = []

    def interrupt_in_the_second_batch(self, batch, batch_idx):
        if batch_idx == 0:
            epochs_run.append(self.current_epoch)
        first_time = epochs_run.count(INTERRUPTED_EPOCH) == 1
        if self.current_epoch == INTERRUPTED_EPOCH and batch_idx == 1 and first_time:
            raise KeyboardInterrupt  # Ctrl+C half-way through an epoch

    monkeypatch.setattr(CVAE, "on_train_batch_start", interrupt_in_the_second_batch, raising=False)
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully and exits
        bench(compose(overrides))
    assert not (interrupted_dir / "results").exists(), "an interrupted run writes no record"

    resumed = bench(compose(overrides))
    assert epochs_run == [0, 1, 2, 2, 3], "the rerun went on with the interrupted epoch, from last.ckpt"
    record = json.loads(resumed.written[0].read_text())
    assert record["extra"]["resumed_from_epoch"] == INTERRUPTED_EPOCH
    assert "resumed_from_epoch" not in expected["extra"]
    assert record["extra"]["epochs_trained"] == expected["extra"]["epochs_trained"] == 4
    assert record["metrics"] == expected["metrics"]  # exactly, not approximately
    best = [Path(r["extra"]["best_checkpoint"]).name for r in (record, expected)]
    assert best[0] == best[1]
    weights, expected_weights = final_weights(record), final_weights(expected)
    assert weights.keys() == expected_weights.keys()
    different = [name for name, value in weights.items() if not torch.equal(value, expected_weights[name])]
    assert different == [], f"weights differ after the resumed epochs: {different}"
