"""Model shapes, the seed's parameter count, symmetry, and cached-embedding scoring."""
from __future__ import annotations

import torch

from mnist_pairs.models import (MODELS, ConcatCNN, SiameseCompareNet, SiameseDeepNet, build_model,
                                 count_parameters, embed_images, one_vs_many, score_pairs)


def test_siamese_has_the_seeds_parameter_count():
    assert count_parameters(SiameseCompareNet()) == 192_449


def test_concat_baseline_is_comparable_in_size():
    n = count_parameters(ConcatCNN())
    assert n == 187_649 and abs(n - 192_449) / 192_449 < 0.05


def test_deeper_encoder_stays_within_the_parameter_budget():
    m = SiameseDeepNet()
    assert count_parameters(m) == 189_025 <= 200_000
    # the parameters moved from the head to the encoder
    assert count_parameters(m.encoder) > count_parameters(SiameseCompareNet().encoder) + 40_000
    assert count_parameters(m.head) < count_parameters(SiameseCompareNet().head) // 2


def test_siamese_models_are_symmetric_in_their_inputs():
    torch.manual_seed(0)
    for cls in (SiameseCompareNet, SiameseDeepNet):
        m = cls().eval()
        a, b = torch.randn(16, 1, 28, 28), torch.randn(16, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(m(a, b), m(b, a), atol=1e-6, rtol=0)


def test_forward_shapes_and_build_by_name():
    for name in MODELS:
        m = build_model(name).eval()
        assert m(torch.zeros(3, 1, 28, 28), torch.zeros(3, 1, 28, 28)).shape == (3,)


def test_score_pairs_with_cached_embeddings_matches_forward():
    torch.manual_seed(0)
    m = SiameseCompareNet().eval()
    images = torch.randn(50, 1, 28, 28)
    ia, ib = torch.randint(50, (200,)), torch.randint(50, (200,))
    with torch.no_grad():
        direct = m(images[ia], images[ib])
    torch.testing.assert_close(score_pairs(m, images, ia, ib, batch_size=64), direct, atol=1e-5, rtol=1e-5)


def test_one_vs_many_matches_forward_on_each_pair():
    torch.manual_seed(0)
    m = SiameseCompareNet().eval()
    query, gallery = torch.randn(3, 1, 28, 28), torch.randn(20, 1, 28, 28)
    scores = one_vs_many(m, embed_images(m, query), embed_images(m, gallery))
    assert scores.shape == (3, 20)
    with torch.no_grad():
        direct = m(query.repeat_interleave(20, 0), gallery.repeat(3, 1, 1, 1)).reshape(3, 20)
    torch.testing.assert_close(scores, direct, atol=1e-5, rtol=1e-5)
