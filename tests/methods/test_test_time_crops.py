"""Yu et al.'s 10-crop test-time averaging: the crops by hand, the average, and the fine-grained methods'
``test_crops`` option."""

from __future__ import annotations

import pytest
import torch

from sbir_bench.methods.components.test_time import crop_averaged, ten_crops
from sbir_bench.methods.fine_grained import DMAR, TripletFG

DATA = {"num_classes": 2, "seen_classes": [0, 1], "image_size": 64, "attribute_dim": 3}


def test_ten_crops_by_hand():
    # a 4x4 image 0..15 and crop_fraction 0.5: 2x2 crops resized back to 4x4 (bilinear, each pixel doubled
    # for a 2x upsampling of a constant block; here corners of the crops are checked)
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    crops = ten_crops(image, crop_fraction=0.5)
    assert crops.shape == (10, 1, 1, 4, 4)
    # top-left crop [[0, 1], [4, 5]]: its upsampled corners are the crop's corners
    assert crops[0, 0, 0, 0, 0] == 0 and crops[0, 0, 0, -1, -1] == 5
    assert crops[1, 0, 0, 0, 0] == 2 and crops[1, 0, 0, -1, -1] == 7  # top-right [[2, 3], [6, 7]]
    assert crops[2, 0, 0, 0, 0] == 8 and crops[3, 0, 0, -1, -1] == 15  # bottom-left, bottom-right
    assert crops[4, 0, 0, 0, 0] == 5 and crops[4, 0, 0, -1, -1] == 10  # centre [[5, 6], [9, 10]]
    torch.testing.assert_close(crops[5:], crops[:5].flip(-1))  # the mirrored five


def test_crop_average_is_the_mean_embedding_of_the_ten_views():
    images = torch.rand(3, 1, 8, 8)

    def embed(x):  # mean intensity of each image and of its left half: flips and crops change the latter
        return torch.stack([x.mean(dim=(1, 2, 3)), x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))], dim=1)

    views = ten_crops(images)
    expected = torch.stack([embed(view) for view in views]).mean(dim=0)
    torch.testing.assert_close(crop_averaged(embed, images, 10), expected)
    torch.testing.assert_close(crop_averaged(embed, images, 1), embed(images))
    with pytest.raises(ValueError, match="test_crops must be one of"):
        crop_averaged(embed, images, 5)


@pytest.mark.parametrize("method", [TripletFG, DMAR])
def test_fine_grained_methods_average_over_crops_when_asked(method):
    torch.manual_seed(0)
    plain = method(DATA, image_size=64, channels=(4, 4, 4, 4, 4), fc=(8, 6)).eval()
    cropped = method(DATA, image_size=64, channels=(4, 4, 4, 4, 4), fc=(8, 6), test_crops=10).eval()
    cropped.load_state_dict(plain.state_dict())
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.stack([plain.embed_query(view) for view in ten_crops(images)]).mean(dim=0)
        torch.testing.assert_close(cropped.embed_gallery(images), expected)
        assert not torch.allclose(cropped.embed_query(images), plain.embed_query(images))
    with pytest.raises(ValueError, match="test_crops must be one of"):
        method(DATA, image_size=64, test_crops=3)
