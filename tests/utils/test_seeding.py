"""Seeds derived from the run's seed: the values exact resume depends on, and seeding itself."""

import random

import pytest
import torch

from utils.seeding import derive_seed, seed_everything


@pytest.mark.parametrize(
    ("purpose", "step", "epoch", "rank", "expected"),
    [
        ("step", 2, 0, 0, 133 + 2000),
        ("epoch", 1, 3, 1, 133 + 1000 + 3 * 7919 + 1),
        ("shuffle", 1, 3, 1, 133 + 1000 + 3),
        ("split", 4, 0, 0, 137),
    ],
)
def test_derived_seeds(purpose, step, epoch, rank, expected):
    assert derive_seed(133, purpose, step, epoch, rank) == expected


def test_unknown_purpose_is_refused():
    with pytest.raises(ValueError, match="unknown seed purpose 'jitter'"):
        derive_seed(1, "jitter")


def test_seed_everything_repeats_every_stream():
    seed_everything(5)
    first = (random.random(), torch.rand(2))
    seed_everything(5)
    assert random.random() == first[0] and torch.equal(torch.rand(2), first[1])
