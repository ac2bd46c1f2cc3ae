from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from datasets.io import write_mask, write_xyz
from datasets.rgbd_dataset import IMAGENET_MEAN, IMAGENET_STD, RGBDDataset
from utils.errors import DataError


@pytest.mark.parametrize("image_size", [64, 32])
def test_rgbd_dataset_item_shapes_and_types(synthetic_root, synthetic_meta, image_size):
    _, test = synthetic_meta
    class_ids = {"ball": 0, "wave": 1}
    dataset = RGBDDataset(synthetic_root, test, class_ids, image_size)
    assert len(dataset) == 6
    for index in range(len(dataset)):
        item = dataset[index]
        rgb, depth = item["inputs"]["rgb"], item["inputs"]["depth"]
        assert rgb.shape == (3, image_size, image_size) and rgb.dtype == torch.float32
        assert depth.shape == (3, image_size, image_size) and depth.dtype == torch.float32
        assert item["mask"].shape == (1, image_size, image_size) and item["mask"].dtype == torch.float32
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert bool(item["mask"].any()) == bool(item["label"])
        assert item["class_id"] == class_ids[item["clsname"]]
        assert item["filename"] == dataset.records[index]["filename"]
        depth01 = depth * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
        torch.testing.assert_close(depth01[0], depth01[1])
        torch.testing.assert_close(depth01[0], depth01[2])


def test_rgbd_dataset_normalisation_values(synthetic_root, synthetic_meta):
    item = RGBDDataset(synthetic_root, synthetic_meta[0], {"box": 3}, 64)[0]
    depth01 = item["inputs"]["depth"][0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert float(depth01.min()) == pytest.approx(0.0, abs=1e-5) and float(depth01.max()) == pytest.approx(1.0, abs=1e-5)
    rgb = item["inputs"]["rgb"]
    rgb01 = rgb * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    assert 0.0 <= float(rgb01.min()) and float(rgb01.max()) <= 1.0 + 1e-5


def test_rgbd_dataset_uses_the_given_normalisation(synthetic_root, synthetic_meta):
    imagenet = RGBDDataset(synthetic_root, synthetic_meta[0], {"box": 3}, 64)[0]
    half = RGBDDataset(synthetic_root, synthetic_meta[0], {"box": 3}, 64, mean=(0.5,) * 3, std=(0.5,) * 3)[0]
    for key in ("rgb", "depth"):
        std, mean = torch.tensor(IMAGENET_STD)[:, None, None], torch.tensor(IMAGENET_MEAN)[:, None, None]
        torch.testing.assert_close(half["inputs"][key] * 0.5 + 0.5, imagenet["inputs"][key] * std + mean, atol=1e-5,
                                   rtol=0)


def test_rgbd_dataset_pairs_rgb_xyz_and_mask_of_the_same_record(tmp_path, encoded_writer):
    records = [encoded_writer(tmp_path, "toy/test/bad", i, size=16, defective=True) for i in range(5)]
    records = records[::-1]  # order of the table must not matter
    dataset = RGBDDataset(tmp_path, records, {"toy": 0}, 16)
    for index, record in enumerate(records):
        item = dataset[index]
        encoded = int(record["filename"].split("/")[-1][:3])
        rgb_value = item["inputs"]["rgb"][0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        assert round(float(rgb_value) * 255) == 10 * encoded + 5
        depth01 = item["inputs"]["depth"][0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        assert int((depth01[0] > 0.5).sum()) == encoded + 1
        assert int(item["mask"][0, :, 0].sum()) == encoded + 1


def test_rgbd_dataset_selects_classes_and_rejects_absent_class(synthetic_root, synthetic_meta):
    train, _ = synthetic_meta
    dataset = RGBDDataset(synthetic_root, train, {"cone": 0}, 32)
    assert len(dataset) == 6 and {r["clsname"] for r in dataset.records} == {"cone"}
    with pytest.raises(DataError, match="teapot"):
        RGBDDataset(synthetic_root, train, {"cone": 0, "teapot": 1}, 32)


def _copy_class(tmp_path, synthetic_root, synthetic_meta, clsname="star"):
    shutil.copytree(synthetic_root / clsname, tmp_path / clsname)
    _, test = synthetic_meta
    return [r for r in test if r["clsname"] == clsname and r["label"] == 1]


def test_rgbd_dataset_all_zero_xyz_raises_naming_file(tmp_path, synthetic_root, synthetic_meta):
    record = _copy_class(tmp_path, synthetic_root, synthetic_meta)[0]
    write_xyz(tmp_path / record["xyzname"], np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(DataError, match="no valid point") as info:
        RGBDDataset(tmp_path, [record], {"star": 0}, 32)[0]
    assert record["xyzname"] in str(info.value)


def test_rgbd_dataset_mask_size_mismatch_raises_naming_file(tmp_path, synthetic_root, synthetic_meta):
    record = _copy_class(tmp_path, synthetic_root, synthetic_meta)[0]
    write_mask(tmp_path / record["maskname"], np.ones((32, 32), dtype=bool))
    with pytest.raises(DataError, match="mask size") as info:
        RGBDDataset(tmp_path, [record], {"star": 0}, 32)[0]
    assert record["maskname"] in str(info.value)


def test_rgbd_dataset_xyz_size_mismatch_raises(tmp_path, synthetic_root, synthetic_meta):
    record = _copy_class(tmp_path, synthetic_root, synthetic_meta)[0]
    write_xyz(tmp_path / record["xyzname"], np.full((48, 64, 3), 0.5, dtype=np.float32))
    with pytest.raises(DataError, match="xyz size"):
        RGBDDataset(tmp_path, [record], {"star": 0}, 32)[0]


def test_rgbd_dataset_missing_partner_raises_naming_file(tmp_path, synthetic_root, synthetic_meta):
    record = _copy_class(tmp_path, synthetic_root, synthetic_meta)[0]
    (tmp_path / record["xyzname"]).unlink()
    with pytest.raises(DataError, match="not found") as info:
        RGBDDataset(tmp_path, [record], {"star": 0}, 32)[0]
    assert record["xyzname"] in str(info.value)


def test_rgbd_dataset_record_without_key_raises(tmp_path):
    with pytest.raises(DataError, match="xyzname"):
        RGBDDataset(tmp_path, [{"filename": "a.png", "label": 0, "clsname": "a"}], {"a": 0}, 32)


def test_rgb_only_dataset_reads_no_point_cloud(tmp_path, synthetic_root, synthetic_meta):
    records = _copy_class(tmp_path, synthetic_root, synthetic_meta)
    shutil.rmtree(tmp_path / "star" / "test")  # the clouds (and everything else) gone ...
    shutil.copytree(synthetic_root / "star" / "test", tmp_path / "star" / "test",
                    ignore=shutil.ignore_patterns("xyz"))  # ... and back without them
    rgb_only = [{k: v for k, v in r.items() if k != "xyzname"} for r in records]
    item = RGBDDataset(tmp_path, rgb_only, {"star": 0}, 32, modalities=["rgb"])[0]
    assert set(item["inputs"]) == {"rgb"} and item["inputs"]["rgb"].shape == (3, 32, 32)
    assert item["mask"].any()
    with pytest.raises(DataError, match="lacks key 'xyzname' \\(the depth modality"):
        RGBDDataset(tmp_path, rgb_only, {"star": 0}, 32)


def test_rgbd_dataset_adds_the_object_footprint_when_asked(synthetic_root, synthetic_meta):
    test = [r for r in synthetic_meta[1] if r["clsname"] == "ball" and r["label"] == 1]
    plain = RGBDDataset(synthetic_root, test, {"ball": 0}, 64)[0]
    item = RGBDDataset(synthetic_root, test, {"ball": 0}, 64, foreground=True)[0]
    assert item["mask"].any()
    assert "foreground" not in plain["inputs"]
    footprint = item["inputs"]["foreground"]
    assert footprint.shape == (1, 64, 64) and footprint.dtype == torch.float32
    assert set(footprint.unique().tolist()) == {0.0, 1.0}
    assert 0.02 < float(footprint.mean()) < 0.6  # the ball, not the table
    assert bool(footprint[item["mask"] > 0].all())  # its defect lies on it
    torch.testing.assert_close(item["inputs"]["depth"], plain["inputs"]["depth"])
    rgb_only = RGBDDataset(synthetic_root, test, {"ball": 0}, 64, modalities=("rgb",), foreground=True)[0]
    assert set(rgb_only["inputs"]) == {"rgb", "foreground"}  # the cloud is read for the footprint alone
    torch.testing.assert_close(rgb_only["inputs"]["foreground"], footprint)
    without_clouds = [{k: v for k, v in r.items() if k != "xyzname"} for r in test]
    with pytest.raises(DataError, match="lacks key 'xyzname' \\(the depth modality and the object footprint"):
        RGBDDataset(synthetic_root, without_clouds, {"ball": 0}, 64, modalities=("rgb",), foreground=True)
