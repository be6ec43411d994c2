"""triplet_fg (Yu et al., CVPR'16) and DMAR (Song et al., BMVC'16): every loss term and the test-time
score against values computed by hand, the ablation variants, the staged pre-training and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from sbir_bench.data.images import IMAGENET_MEAN, IMAGENET_STD
from sbir_bench.data.records import DataInfo
from sbir_bench.methods.components.fine_grained import (
    SketchANet,
    attribute_prediction_loss,
    attribute_ranking_loss,
    dmar_score,
    ink_image,
    pairwise_attribute_cross_entropy,
    squared_euclidean_distance,
)
from sbir_bench.methods.components.metric_losses import triplet_margin_loss
from sbir_bench.methods.fine_grained import DMAR, DMARNoAP, DMARNoAPAR, DMARNoAR, TripletFG

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3 / 4
DATA = DataInfo(num_classes=2, seen_classes=(0, 1), image_size=16, attribute_dim=2)
SMALL = {"channels": (4, 4, 4, 4, 4), "fc": (16, 4), "image_size": 64}


def test_yu_triplet_loss_on_squared_distances_by_hand():
    anchor = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    positive = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    negative = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    d_positive = squared_euclidean_distance(anchor, positive)
    d_negative = squared_euclidean_distance(anchor, negative)
    # (0.4² + 0.8² = 0.8, 1² + 1² = 2) and the other way round
    torch.testing.assert_close(d_positive, torch.tensor([0.8, 2.0]))
    torch.testing.assert_close(d_negative, torch.tensor([2.0, 0.8]))
    # max(0, 0.3 + 0.8 − 2) = 0, max(0, 0.3 + 2 − 0.8) = 1.5; mean 0.75
    loss = triplet_margin_loss(d_positive, d_negative, margin=0.3)
    assert loss.item() == pytest.approx(0.75)


def test_attribute_prediction_loss_by_hand():
    # sigmoid(0) = 0.5 with target 1: −ln 0.5 = 0.693147; sigmoid(ln 3) = 0.75 with target 0: −ln 0.25 =
    # 1.386294; mean over the 2 attributes 1.039721 (= 1.5 ln 2)
    loss = attribute_prediction_loss(torch.tensor([[0.0, LN3]]), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(1.5 * math.log(2.0), abs=1e-6)


def test_attribute_ranking_loss_by_hand_and_gradients_reach_both_predictions():
    sketch = torch.tensor([[LN3, 0.0]], requires_grad=True)  # a = (0.75, 0.5)
    positive = torch.tensor([[0.0, LN3]], requires_grad=True)  # b = (0.5, 0.75)
    loss = attribute_ranking_loss(sketch, positive)
    # attribute 1: −(0.75 ln 0.5 + 0.25 ln 0.5) = ln 2 = 0.693147
    # attribute 2: −(0.5 ln 0.75 + 0.5 ln 0.25) = 0.143841 + 0.693147 = 0.836988; mean 0.765068
    assert loss.item() == pytest.approx(0.765068, abs=1e-6)
    loss.backward()
    assert sketch.grad.abs().sum() > 0 and positive.grad.abs().sum() > 0


def test_dmar_score_by_hand():
    queries = torch.tensor([[1.0, 0.0]])
    gallery = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    query_probabilities = torch.tensor([[0.75, 0.5]])
    gallery_probabilities = torch.tensor([[0.5, 0.75], [0.75, 0.5]])
    # H(a, b) = 0.765068 (above); H(a, a) = (−(0.75 ln 0.75 + 0.25 ln 0.25) + ln 2) / 2
    #         = (0.215762 + 0.346574 + 0.693147) / 2 = 0.627741
    cross_entropy = pairwise_attribute_cross_entropy(
        query_probabilities.double(), gallery_probabilities.double()
    )
    torch.testing.assert_close(
        cross_entropy, torch.tensor([[0.765068, 0.627741]], dtype=torch.float64), atol=1e-6, rtol=0
    )
    # R = D + 0.5 H: √2 + 0.382534 = 1.796748; 0 + 0.313871
    score = dmar_score(queries, gallery, query_probabilities, gallery_probabilities, 0.5)
    assert score.dtype == torch.float64 and score.shape == (1, 2)
    torch.testing.assert_close(
        score, torch.tensor([[1.796748, 0.313871]], dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        dmar_score(queries, gallery, query_probabilities, gallery_probabilities, 0.0),
        torch.tensor([[math.sqrt(2.0), 0.0]], dtype=torch.float64),
    )


def test_dmar_pairwise_distance_is_the_score_of_its_concatenated_embeddings():
    torch.manual_seed(0)
    method = DMAR(DATA, ranking_weight=0.5, **SMALL)
    assert method.distance == "custom" and method.net.embedding_dim == 4
    images = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        embeddings = method.embed_query(images)
    assert embeddings.shape == (5, 4 + 2)
    f, probabilities = embeddings[:, :4], embeddings[:, 4:]
    assert ((probabilities > 0) & (probabilities < 1)).all()
    torch.testing.assert_close(f.norm(dim=1), torch.ones(5))  # L2-normalised f
    score = method.pairwise_distance(embeddings[:2], embeddings)
    assert score.shape == (2, 5) and score.dtype == torch.float64
    expected = torch.cdist(f[:2].double(), f.double()) + 0.5 * pairwise_attribute_cross_entropy(
        probabilities[:2].double(), probabilities.double()
    )
    torch.testing.assert_close(score, expected)
    with pytest.raises(ValueError, match="widths"):
        method.pairwise_distance(embeddings[:, :5], embeddings)


def _batch(n: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batch = {key: torch.rand(n, 3, 16, 16, generator=generator) for key in ("sketch", "positive", "negative")}
    for key in ("sketch", "positive", "negative"):
        batch[f"{key}_attributes"] = torch.randint(0, 2, (n, 2), generator=generator).float()
    return batch


def test_dmar_total_is_the_weighted_sum_of_its_terms_and_each_term_is_the_papers():
    method = DMAR(DATA, prediction_weights=(1.0, 2.0, 3.0), ranking_weight=0.5, margin=0.7, **SMALL)
    batch = _batch()
    total, terms = method.loss_terms(batch)
    assert set(terms) == {
        "triplet",
        "prediction_sketch",
        "prediction_positive",
        "prediction_negative",
        "ranking",
    }
    expected = (
        terms["triplet"]
        + 0.5 * terms["ranking"]
        + 1 * terms["prediction_sketch"]
        + 2 * terms["prediction_positive"]
        + 3 * terms["prediction_negative"]
    )
    torch.testing.assert_close(total.detach(), expected)
    with torch.no_grad():  # each term recomputed from the branch's outputs
        hidden = {key: method.net.hidden(batch[key]) for key in ("sketch", "positive", "negative")}
        f = {key: method.net.embed(h) for key, h in hidden.items()}
        logits = {key: method.attribute_head(h) for key, h in hidden.items()}
    d_positive = (f["sketch"] - f["positive"]).norm(dim=1)  # Euclidean, not squared (L_θ of DMAR)
    d_negative = (f["sketch"] - f["negative"]).norm(dim=1)
    torch.testing.assert_close(terms["triplet"], (0.7 + d_positive - d_negative).clamp(min=0).mean())
    for key in ("sketch", "positive", "negative"):
        torch.testing.assert_close(
            terms[f"prediction_{key}"], attribute_prediction_loss(logits[key], batch[f"{key}_attributes"])
        )
    torch.testing.assert_close(terms["ranking"], attribute_ranking_loss(logits["sketch"], logits["positive"]))


def test_staged_pretraining_trains_attribute_prediction_alone_first():
    method = DMAR(DATA, pretrain_epochs=1, **SMALL)
    assert method.in_pretraining  # current_epoch 0 < 1
    total, terms = method.loss_terms(_batch())
    torch.testing.assert_close(
        total.detach(),
        terms["prediction_sketch"] + terms["prediction_positive"] + terms["prediction_negative"],
    )
    with pytest.raises(ValueError, match="pretrain_epochs"):
        DMARNoAP(DATA, pretrain_epochs=1, **SMALL)


@pytest.mark.parametrize(
    ("variant", "terms", "distance"),
    [
        (DMARNoAP, {"triplet", "ranking"}, "custom"),
        (
            DMARNoAR,
            {"triplet", "prediction_sketch", "prediction_positive", "prediction_negative"},
            "euclidean",
        ),
        (DMARNoAPAR, {"triplet"}, "euclidean"),
    ],
)
def test_ablation_variants_switch_their_terms_off(variant, terms, distance):
    method = variant(DATA, **SMALL)
    total, computed = method.loss_terms(_batch())
    assert set(computed) == terms and method.distance == distance
    # default weights: λ_s = λ_p+ = λ_p- = λ_a = 1 where the variant keeps the term
    torch.testing.assert_close(total.detach(), sum(computed.values()))
    with torch.no_grad():
        width = method.embed_gallery(torch.rand(2, 3, 16, 16)).shape[1]
    assert width == (4 + 2 if distance == "custom" else 4)
    with pytest.raises(ValueError, match="must be 0"):
        variant(DATA, prediction_weights=(1.0, 0.0, 0.0), ranking_weight=1.0, **SMALL)


def test_dmar_without_attributes_in_the_data_is_the_triplet_term_with_a_warning():
    with pytest.warns(UserWarning, match="no instance attributes"):
        method = DMAR(DataInfo(num_classes=2, seen_classes=(0, 1), image_size=16), **SMALL)
    assert method.attribute_head is None and method.distance == "euclidean"
    batch = {key: torch.rand(2, 3, 16, 16) for key in ("sketch", "positive", "negative")}
    total, terms = method.loss_terms(batch)
    assert set(terms) == {"triplet"} and torch.equal(total.detach(), terms["triplet"])


def test_triplet_fg_loss_is_yus_on_its_embeddings():
    method = TripletFG(DATA, margin=0.3, **SMALL)
    assert method.distance == "euclidean" and method.train_sampling == "annotated_triplets"
    batch = _batch()
    loss, terms = method.loss_terms(batch)
    with torch.no_grad():
        s, p, n = (method.net(batch[key]) for key in ("sketch", "positive", "negative"))
    expected = (0.3 + (s - p).square().sum(1) - (s - n).square().sum(1)).clamp(min=0).mean()
    torch.testing.assert_close(loss.detach(), expected)
    torch.testing.assert_close(terms["d2_positive"], (s - p).square().sum(1).mean())


def test_sketch_a_net_has_the_published_shapes_and_takes_ink():
    net = SketchANet(225)  # 225 → conv 15/3: 71 → pool: 35 → conv 5: 31 → pool: 15 → convs: 15 → pool: 7
    assert net.fc1.in_features == 256 * 7 * 7 and (net.hidden_dim, net.embedding_dim) == (512, 256)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    white, black = (torch.ones(1, 3, 2, 2) - mean) / std, (torch.zeros(1, 3, 2, 2) - mean) / std
    torch.testing.assert_close(ink_image(white), torch.zeros(1, 1, 2, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(ink_image(black), torch.ones(1, 1, 2, 2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="too small"):
        SketchANet(32)


def test_bad_batches_and_settings_are_named():
    method = DMAR(DATA, **SMALL)
    batch = _batch()
    del batch["negative_attributes"]
    with pytest.raises(KeyError, match="negative_attributes"):
        method.loss_terms(batch)
    batch = _batch()
    batch["sketch_attributes"] = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="sketch_attributes is \\(3, 5\\), expected \\(3, 2\\)"):
        method.loss_terms(batch)
    with pytest.raises(ValueError, match="optimizer"):
        TripletFG(DATA, optimizer="rmsprop", **SMALL)
    with pytest.raises(ValueError, match="margin"):
        TripletFG(DATA, margin=0.0, **SMALL)
    with pytest.raises(ValueError, match="non-negative"):
        DMAR(DATA, ranking_weight=-1.0, **SMALL)
    nan = {key: torch.full((2, 3, 16, 16), float("nan")) for key in ("sketch", "positive", "negative")}
    with pytest.raises(FloatingPointError, match="triplet_fg"):
        TripletFG(DATA, **SMALL).training_step(nan, 0)
