"""GDH's fine-grained mode (``gdh_fg``): triplet batches, the triplet hash loss (margin 18 on squared
distances) on H(G_I(sketch)), H(p+), H(p-), no class codes; the mode is tied to the method's batches."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from sbir_bench.methods.components.domain_migration import squared_triplet_loss
from sbir_bench.methods.gdh import GDH, GDHFineGrained
from tests.methods.test_gdh import SMALL, info


def small_fg(**kwargs) -> GDHFineGrained:
    return GDHFineGrained(info(), **{**SMALL, **kwargs})


def test_the_fine_grained_mode_is_gdh_fg_on_annotated_triplets():
    method = small_fg()
    assert method.hparams.mode == "fine_grained" and method.hparams.triplet_margin == 18.0
    assert method.train_sampling == "annotated_triplets" and method.distance == "hamming"
    with pytest.raises(ValueError, match="use method=gdh_fg"):
        GDH(info(), mode="fine_grained", **SMALL)
    with pytest.raises(ValueError, match="use method=gdh"):
        small_fg(mode="category")
    with pytest.raises(ValueError, match="triplet_margin"):
        small_fg(triplet_margin=0.0)


def test_the_hash_loss_is_the_triplet_loss_of_h_on_the_migrated_sketch_and_both_photos():
    method = small_fg(triplet_margin=5.0).eval()
    generator = torch.Generator().manual_seed(0)
    batch = {
        key: torch.randn(2, 3, 32, 32, generator=generator) for key in ("sketch", "positive", "negative")
    }
    migrated = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1
    with torch.no_grad():
        loss = method._hash_loss(batch, migrated)
        h = method.hash_net  # eval mode: each image's output does not depend on the rest of the batch
        anchor = h(method.hash_input(migrated, generated=True))
        positive, negative = h(batch["positive"]), h(batch["negative"])
    torch.testing.assert_close(loss, squared_triplet_loss(anchor, positive, negative, margin=5.0))


def test_a_training_step_pairs_the_sketch_with_its_positive_and_needs_no_codes():
    method = small_fg()
    batch = {key: torch.randn(2, 3, 32, 32) for key in ("sketch", "positive", "negative")}
    optimisers = method.configure_optimizers()
    trainer = mock.MagicMock(max_epochs=1)
    with (
        mock.patch.object(GDHFineGrained, "optimizers", return_value=optimisers),
        mock.patch.object(GDHFineGrained, "trainer", trainer, create=True),
        mock.patch.object(GDHFineGrained, "manual_backward", lambda self, loss: loss.backward()),
        mock.patch.object(GDHFineGrained, "log_training") as logged,
    ):
        method.on_train_epoch_start()  # learning rates only: no D/B-step, no codes
        before = [p.detach().clone() for p in method.hash_net.parameters()]
        method.training_step(batch, 0)
    assert method._codes is None
    assert any(not torch.equal(a, b) for a, b in zip(before, method.hash_net.parameters(), strict=True))
    assert torch.isfinite(logged.call_args.args[0])
    with pytest.raises(KeyError, match="negative"):
        method.training_step({"sketch": batch["sketch"], "positive": batch["positive"]}, 0)
