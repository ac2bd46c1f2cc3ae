from __future__ import annotations

import pytest
from torch.utils.data import DistributedSampler

from datasets.loader import build_loader
from datasets.rgbd_dataset import RGBDDataset


@pytest.fixture(scope="module")
def small_dataset(synthetic_root, synthetic_meta):
    train, _ = synthetic_meta
    return RGBDDataset(synthetic_root, train, {"ball": 0, "bowl": 1}, 32)  # 12 samples


def _filenames(loader) -> list[str]:
    return [name for batch in loader for name in batch["filename"]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_build_loader_distributed_ranks_cover_all_samples(small_dataset, shuffle):
    per_rank = []
    for rank in (0, 1):
        loader = build_loader(small_dataset, 4, 0, shuffle, seed=0, distributed=True, num_replicas=2, rank=rank)
        assert isinstance(loader.sampler, DistributedSampler)
        per_rank.append(_filenames(loader))
    assert len(per_rank[0]) == len(per_rank[1]) == 6
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(r["filename"] for r in small_dataset.records)


def test_build_loader_without_process_group_defaults_to_one_replica(small_dataset):
    loader = build_loader(small_dataset, 5, 0, shuffle=False, seed=0, distributed=True)
    assert loader.sampler.num_replicas == 1 and loader.sampler.rank == 0
    assert len(_filenames(loader)) == 12


def test_build_loader_shuffle_is_seeded(small_dataset):
    first = _filenames(build_loader(small_dataset, 4, 0, shuffle=True, seed=1))
    again = _filenames(build_loader(small_dataset, 4, 0, shuffle=True, seed=1))
    other = _filenames(build_loader(small_dataset, 4, 0, shuffle=True, seed=2))
    assert first == again and first != other and sorted(first) == sorted(other)


def test_build_loader_batches_and_drop_last(small_dataset):
    loader = build_loader(small_dataset, 5, 0, shuffle=False, seed=0, drop_last=True)
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["inputs"]["rgb"].shape == (5, 3, 32, 32) and batches[0]["mask"].shape == (5, 1, 32, 32)
    assert batches[0]["class_id"].tolist() == [0] * 5


def test_build_loader_with_worker_process(small_dataset):
    loader = build_loader(small_dataset, 6, 1, shuffle=True, seed=0)
    assert sorted(_filenames(loader)) == sorted(r["filename"] for r in small_dataset.records)
