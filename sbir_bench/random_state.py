"""The global random states a training run draws from, saved in its checkpoints and restored on resume.

A run resumed from ``last.ckpt`` must give the record an uninterrupted run gives. Lightning restores the
weights, the optimiser and the loops but no random number generator, so a resumed run used to draw other
dropout masks and other reparameterisation noise. :class:`RandomStateCheckpoint` saves, with every
checkpoint (taken at the end of an epoch), Python's ``random``, NumPy's global generator, torch's CPU
generator and each CUDA device's generator, and restores them when ``trainer.fit(ckpt_path=...)`` loads the
checkpoint, before the first resumed batch. The training batches' own generator is the DataModule's state
(``RetrievalDataModule.state_dict``).

Under DDP a checkpoint holds rank 0's states and every rank restores them: the CPU states are the same on
every rank (one seed, the same draws); only the CUDA states of other devices are approximate, and CUDA
kernels are not bitwise reproducible anyway. Random image augmentation in DataLoader worker processes
(``num_workers > 0``) draws from the workers' own generators, which no checkpoint holds: there a resumed
run can differ from an uninterrupted one (the embedded methods train on cached features and draw none).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def _numpy_state() -> dict[str, Any]:
    """NumPy's global state with its key array as a tensor, so checkpoints load with ``weights_only=True``."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["name"], keys, state["position"], state["has_gauss"], state["cached_gaussian"])
    )


def collect_random_states() -> dict[str, Any]:
    """Every global generator's state: ``python``, ``numpy``, ``torch`` and (when initialised) ``cuda``."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Set every global generator to a state :func:`collect_random_states` returned."""
    random.setstate(states["python"])
    _set_numpy_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = states["cuda"][: torch.cuda.device_count()]
        for device, state in enumerate(cuda_states):
            torch.cuda.set_rng_state(state, device)


class RandomStateCheckpoint(L.Callback):
    """Saves the global random states with each checkpoint and restores them on resume.

    After a resumed ``fit``, ``resumed_at_epoch`` is the epoch training went on with (0-based: the number
    of epochs the checkpoint had completed); it is ``None`` for a run that started from scratch.
    """

    def __init__(self) -> None:
        self.restored = False
        self.resumed_at_epoch: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return collect_random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_random_states(state_dict)
        self.restored = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.resumed_at_epoch = trainer.current_epoch if self.restored else None
