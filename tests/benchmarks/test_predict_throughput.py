"""benchmarks/predict_throughput.py measures predict end to end, with and without clouds, beside the model alone."""

from benchmarks import predict_throughput


def test_predict_throughput_reports_every_rate(capsys):
    (row,) = predict_throughput.main(["--sizes", "synthetic", "--images", "2", "--batch-size", "2"])
    assert row["end_to_end_ips"] > 0 and row["no_clouds_ips"] > 0 and row["model_ips"] > 0 and row["peak_mib"] > 0
    assert row["ply_ms"] > 0
    assert row["input_px"] == 128 and row["model_px"] == 128
    assert 128 * 128 * 19 / 2**20 < row["ply_mib"] < 128 * 128 * 19 / 2**20 * 1.01  # 19 bytes per point, all valid
    table = capsys.readouterr().out
    assert "| synthetic | 128 | 128 |" in table and "without clouds img/s | clouds ×" in table
