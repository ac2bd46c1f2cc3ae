from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_make_synthetic_cli_runs_from_any_cwd(tmp_path):
    script = REPO_ROOT / "A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py"
    args = [
        sys.executable,
        str(script),
        "--out",
        "syn",
        "--size",
        "32",
        "--train-per-class",
        "1",
        "--test-per-class",
        "2",
        "--classes",
        "ball",
        "capsule",
        "--meta",
    ]
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    train = (tmp_path / "syn" / "train.jsonl").read_text().splitlines()
    assert len(train) == 2 * (1 + 2)
    assert json.loads(train[0])["clsname"] == "ball"
    assert (tmp_path / "syn/capsule/test/good/gt/000.png").is_file()


def test_make_synthetic_cli_errors_exit_2(tmp_path, load_cli, capsys):
    cli = load_cli("A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py")
    out = str(tmp_path / "syn")
    assert (
        cli.main(["--out", out, "--size", "32", "--train-per-class", "1", "--test-per-class", "2", "--classes", "ball"])
        == 0
    )
    assert cli.main(["--out", out]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["--out", str(tmp_path / "other"), "--classes", "teapot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "teapot" in err


def test_build_meta_cli(tmp_path, tiny_root, load_cli, capsys):
    cli = load_cli("A_ori_dataset_split/MVTec_3D-AD/build_meta.py")
    assert cli.main(["--root", str(tiny_root), "--out", str(tmp_path / "meta")]) == 0
    train = [json.loads(line) for line in (tmp_path / "meta/train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "meta/test.jsonl").read_text().splitlines()]
    assert len(train) == 8 and len(test) == 4
    assert {r["clsname"] for r in train} == {"box", "cone"}
    assert cli.main(["--root", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: dataset root is not a folder")


def test_make_synthetic_cli_if_absent_keeps_or_refuses(tmp_path, load_cli, capsys):
    cli = load_cli("A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py")
    args = ["--out", str(tmp_path / "syn"), "--size", "32", "--train-per-class", "1", "--test-per-class", "2"]
    args += ["--classes", "ball", "--if-absent"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    assert cli.main([*args, "--seed", "5"]) == 2
    assert "seed 0 (wanted 5)" in capsys.readouterr().err


def test_make_synthetic_cli_defect_scale(tmp_path, load_cli, capsys):
    cli = load_cli("A_ori_dataset_split/Synthetic3D/make_synthetic_3d.py")
    args = ["--size", "32", "--train-per-class", "1", "--test-per-class", "2", "--classes", "ball"]
    assert cli.main(["--out", str(tmp_path / "syn"), *args, "--defect-scale", "1"]) == 0
    assert json.loads((tmp_path / "syn/synthetic3d.json").read_text())["defect_scale"] == 1.0
    assert cli.main(["--out", str(tmp_path / "bad"), *args, "--defect-scale", "5"]) == 2
    assert "defect_scale must be in (0, 3], got 5.0" in capsys.readouterr().err
