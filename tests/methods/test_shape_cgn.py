"""CGN (Dai & Liang, ICME'20): AM-softmax, class centres and the guidance loss against values worked out by
hand, the stage schedule, shapes of the embeddings, and a tiny two-stage fit on separable fake data."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from sbir_bench.methods.components.cross_modal_guidance import (
    am_softmax_loss,
    class_mean_sums,
    cosine_logits,
    guidance_loss,
)
from sbir_bench.methods.shape_cgn import CGN
from tests.methods.shape_batches import class_batches, fit, info, nearest_neighbour_accuracy, separable_data
from tests.methods.test_cvae import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cosine_logits():
    # [3, 4] against w0 = [1, 0] (norm irrelevant: [2, 0]) and w1 = [0, 1]: cos = 3/5, 4/5
    assert cosine_logits(torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])).tolist()[0] == (
        pytest.approx([0.6, 0.8])
    )


def test_am_softmax_subtracts_the_margin_from_the_target_cosine_then_scales():
    cosines, labels = torch.tensor([[0.5, 0.1]]), torch.tensor([0])
    # s = 2, m = 0.25: logits [2·(0.5 − 0.25), 2·0.1] = [0.5, 0.2]
    # −log(e^0.5 / (e^0.5 + e^0.2)) = log(1 + e^−0.3) = 0.554355...
    value = am_softmax_loss(cosines, labels, scale=2.0, margin=0.25)
    assert value.item() == pytest.approx(math.log1p(math.exp(-0.3)))
    # without the margin it is plain scaled softmax: log(1 + e^{2·0.1 − 2·0.5}) = log(1 + e^−0.8)
    plain = am_softmax_loss(cosines, labels, scale=2.0, margin=0.0)
    assert plain.item() == pytest.approx(math.log1p(math.exp(-0.8)))


def test_class_mean_sums_normalise_then_add_per_class():
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    sums, counts = class_mean_sums(features, torch.tensor([0, 0, 1]), num_classes=3)
    # class 0: [0.6, 0.8] + [1, 0] = [1.6, 0.8]; class 1: [0, 1]; class 2: nothing
    assert sums.tolist() == [pytest.approx([1.6, 0.8]), [0.0, 1.0], [0.0, 0.0]]
    assert counts.tolist() == [2.0, 1.0, 0.0]


def test_guidance_loss_pulls_towards_the_own_centre_and_away_from_the_others():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    sketch, labels = torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([0, 1])
    everyone = torch.tensor([True, True, True])
    # sketch 0: cos to the centres 0.6, 0.8, −0.6 → −0.6 + 0.5·(0.8 − 0.6) = −0.5
    # sketch 1: cos 0, 1, 0 → −1 + 0.5·(0 + 0) = −1;   mean −0.75
    assert guidance_loss(sketch, labels, centres, everyone, weight=0.5).item() == pytest.approx(-0.75)
    # class 2 without a centre: sketch 0 → −0.6 + 0.5·0.8 = −0.2, sketch 1 → −1; mean −0.6
    known = torch.tensor([True, True, False])
    assert guidance_loss(sketch, labels, centres, known, weight=0.5).item() == pytest.approx(-0.6)
    # a sketch of a class with no centre is left out: only sketch 0 counts → −0.2
    value = guidance_loss(sketch, torch.tensor([0, 2]), centres, known, weight=0.5)
    assert value.item() == pytest.approx(-0.2)


def test_stages_follow_the_teacher_epochs():
    method = CGN(info(), teacher_epochs=2)
    assert [method.stage(e) for e in range(5)] == ["teacher", "teacher", "centres", "student", "student"]


def test_embeddings_have_the_configured_width():
    method = CGN(info(dim=16), widths=(8, 6))
    assert method.embed_query(torch.rand(5, 16)).shape == (5, 6)
    assert method.embed_gallery(torch.rand(4, 3, 16)).shape == (4, 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"margin": 1.0}, "margin"), ({"scale": 0.0}, "scale"), ({"teacher_epochs": 0}, "teacher_epochs")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CGN(info(), **kwargs)


class Snapshots(L.Callback):
    """The teacher's and the student's parameters at the end of every training epoch."""

    def __init__(self) -> None:
        self.teacher: list[list[torch.Tensor]] = []
        self.student: list[list[torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.teacher.append([p.detach().clone() for p in module.teacher.parameters()])
        self.student.append([p.detach().clone() for p in module.student.parameters()])


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_tiny_two_stage_fit_guides_the_sketches_to_the_teacher_centres():
    data = separable_data()
    torch.manual_seed(0)
    method = CGN(info(), widths=(32, 8), teacher_epochs=4, guidance_weight=0.1, lr=3e-3)
    student_at_start = [p.detach().clone() for p in method.student.parameters()]
    before = nearest_neighbour_accuracy(method, data)
    snapshots = Snapshots()
    # epochs 0-3 teacher, 4 centres, 5-11 student
    fit(method, class_batches(data, classes=4, n=4, m=2, num_batches=8), epochs=12, callbacks=[snapshots])
    assert not same(snapshots.teacher[0], snapshots.teacher[3]), "the teacher learns in its stage"
    assert same(snapshots.student[4], student_at_start), "the student waits for the centres"
    assert same(snapshots.teacher[4], snapshots.teacher[11]), "the teacher is fixed from the centre epoch on"
    assert not same(snapshots.student[4], snapshots.student[11]), "the student learns in its stage"
    _, known = method.class_centres
    assert known.all() and method.centre_counts.sum().item() == 8 * 4 * 2  # one epoch: 8 batches × 4 × 2
    after = nearest_neighbour_accuracy(method, data)
    assert after >= 0.9 and after > before, (before, after)
