"""benchmarks/predict_throughput.py measures predict end to end beside the model alone."""

from benchmarks import predict_throughput


def test_predict_throughput_reports_both_rates(capsys):
    (row,) = predict_throughput.main(["--sizes", "synthetic", "--images", "2", "--batch-size", "2"])
    assert row["end_to_end_ips"] > 0 and row["model_ips"] > 0 and row["peak_mib"] > 0
    assert row["input_px"] == 128 and row["model_px"] == 128
    assert "| synthetic | 128 | 128 |" in capsys.readouterr().out
