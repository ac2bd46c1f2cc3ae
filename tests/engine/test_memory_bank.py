"""engine/memory_bank.py: nearest-neighbour image scores on hand-made features, whole and on a region."""

import numpy as np
import torch

from engine.memory_bank import fuse_by_zscore_max, knn_image_scores, leave_one_out_scores


def _bank_and_query() -> tuple[torch.Tensor, torch.Tensor]:
    """A bank of 2 images × 3 positions at the origin; 2 queries, each with one far position (3 or 4 away)."""
    bank = torch.zeros(2, 3, 2)
    query = torch.zeros(2, 3, 2)
    query[0, 0] = torch.tensor([3.0, 0.0])  # far at position 0
    query[1, 2] = torch.tensor([0.0, 4.0])  # far at position 2
    query[1, 1] = torch.tensor([1.0, 0.0])
    return bank, query


def test_knn_image_scores_whole_and_on_a_region():
    bank, query = _bank_and_query()
    np.testing.assert_allclose(knn_image_scores(bank, query), [3.0, 4.0])
    region = torch.tensor([[False, True, True], [True, True, False]])
    np.testing.assert_allclose(knn_image_scores(bank, query, region), [0.0, 1.0])
    np.testing.assert_allclose(knn_image_scores(bank, query, torch.ones(2, 3, dtype=torch.bool)), [3.0, 4.0])


def test_leave_one_out_and_fusion():
    bank = torch.zeros(3, 2, 1)
    bank[2, 1] = 2.0  # the third image has one position 2 away from the others
    np.testing.assert_allclose(leave_one_out_scores(bank), [0.0, 0.0, 2.0])
    np.testing.assert_allclose(leave_one_out_scores(bank, torch.tensor([[True, True]] * 2 + [[True, False]])), 0.0)
    fused = fuse_by_zscore_max({"a": np.array([1.0, 3.0]), "b": np.array([2.0, 0.0])},
                               {"a": np.array([1.0, 3.0]), "b": np.array([0.0, 2.0])})
    np.testing.assert_allclose(fused, [1.0, 1.0])
