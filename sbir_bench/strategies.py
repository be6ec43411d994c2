"""A DDP strategy for methods fitted in closed form (ESZSL, SAE): nothing to wrap, every rank fits alike.

PyTorch's DistributedDataParallel refuses a module with no parameter that requires a gradient. Such a
method gathers its training data across ranks itself (``LightningModule.all_gather``) and solves the same
system on every rank, so it needs DDP's process group and samplers but not the gradient synchronisation:
this strategy leaves it unwrapped and wraps any other module as Lightning's DDPStrategy does.
"""

from __future__ import annotations

from lightning.pytorch.strategies import DDPStrategy


def has_trainable_parameters(module) -> bool:  # noqa: ANN001 - any torch module
    return any(parameter.requires_grad for parameter in module.parameters())


class ClosedFormDDPStrategy(DDPStrategy):
    """:class:`~lightning.pytorch.strategies.DDPStrategy` that does not wrap a module without trainable
    parameters (Lightning's ``strategy: ddp`` otherwise)."""

    strategy_name = "ddp_closed_form"

    def configure_ddp(self) -> None:
        if has_trainable_parameters(self.model):
            super().configure_ddp()
