import errno

import pytest
import torch

from engine.checkpoint import architecture_fingerprint, load_checkpoint, save_checkpoint
from utils.errors import CheckpointError

CFG = {
    "model": {"net": [{"name": "a", "kwargs": {"pretrained": True, "width": 3}}], "jitter": {"scale": 1}},
    "dataset": {"image_size": 64},
}


def test_save_load_roundtrip_from_disk(tmp_path):
    path = tmp_path / "step_0" / "ckpt.pth"
    save_checkpoint(path, {"fingerprint": architecture_fingerprint(CFG), "model": {"w": torch.arange(3)}})
    payload = load_checkpoint(path, architecture_fingerprint(CFG))
    assert torch.equal(payload["model"]["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temp file left behind


def test_fingerprint_ignores_jitter_but_not_architecture_or_the_scored_region():
    other = {**CFG, "model": {**CFG["model"], "jitter": {"scale": 5}}}
    assert architecture_fingerprint(other) == architecture_fingerprint(CFG)
    whole = {**CFG, "model": {**CFG["model"], "score_region": "image"}}  # the default: as before the switch
    assert architecture_fingerprint(whole) == architecture_fingerprint(CFG)
    on_object = {**CFG, "model": {**CFG["model"], "score_region": "object"}}  # its thresholds are the object's
    assert architecture_fingerprint(on_object) != architecture_fingerprint(CFG)
    offline = {**CFG, "model": {**CFG["model"], "net": [{"name": "a", "kwargs": {"pretrained": False, "width": 3}}]}}
    assert architecture_fingerprint(offline) == architecture_fingerprint(CFG)
    wider = {**CFG, "dataset": {"image_size": 128}}
    assert architecture_fingerprint(wider) != architecture_fingerprint(CFG)
    adapted = {**CFG, "model": {**CFG["model"], "class_adapter_rank": 8}}
    assert architecture_fingerprint(adapted) != architecture_fingerprint(CFG)
    standardised_map = {**CFG, "model": {**CFG["model"], "map_fusion": "normal_zmax"}}
    assert architecture_fingerprint(standardised_map) != architecture_fingerprint(CFG)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "checkpoint not found"),
        (lambda p: p.write_bytes(b"not a checkpoint"), "cannot read checkpoint"),
        (lambda p: torch.save({"x": 1}, p), "is not an IB-IUMAD checkpoint"),
        (lambda p: save_checkpoint(p, {"fingerprint": "other"}), "written by another model configuration"),
    ],
)
def test_load_checkpoint_errors(tmp_path, setup, message):
    path = tmp_path / "ckpt.pth"
    setup(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, architecture_fingerprint(CFG))


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, {"fingerprint": "f", "epoch": 1})

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(CheckpointError, match="disk full; the previous file is kept"):
        save_checkpoint(path, {"fingerprint": "f", "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_a_checkpoint_of_an_older_version_names_the_commit_that_reads_it(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"version": 1, "fingerprint": "f", "model": {}}, path)
    with pytest.raises(CheckpointError, match="older version of this repository .* check out commit 8eb4294"):
        load_checkpoint(path)
