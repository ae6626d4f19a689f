"""large_scale_optimization/denoise_bench.py (`denoise.py --bench`) on a small signal and a tiny image."""
import json

import matplotlib.image
import numpy as np

import denoise
import denoise_bench


def test_bench_writes_both_parts(tmp_path, monkeypatch):
    """The same code as the n = 1e6 / cameraman benchmark, shrunk: Condat's answer meets the KKT conditions,
    FISTA on the dual is reported against it, and on the image FISTA ends below Chambolle's default stop."""
    monkeypatch.setattr(denoise_bench, "BENCH_N_1D", 3000)
    monkeypatch.setattr(denoise_bench, "BENCH_ITERS_1D", 50)
    rng = np.random.default_rng(0)
    image = tmp_path / "tiny.png"
    matplotlib.image.imsave(image, np.kron(rng.uniform(size=(3, 3, 3)), np.ones((8, 8, 1))))
    denoise.main(["--bench", "--image", str(image), "--ref-max-iters", "300", "--out-dir", str(tmp_path / "b")])
    out = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert out["complete"] and out["threads"] == 1 and out["date_utc"] and out["machine"]["cpu_count"] >= 1
    assert out["command"].endswith(f"python large_scale_optimization/denoise.py --bench --image {image} "
                                   f"--ref-max-iters 300 --out-dir {tmp_path / 'b'}")
    assert set(out["tv1d"]) == {"0.3", "1.0"}
    for row in out["tv1d"].values():
        assert max(row["kkt"].values()) < 1e-10 and row["fista_restart"]["iters"] == 50
        assert row["fista_restart"]["rel_obj_gap"] >= -1e-12 and len(row["condat_wall_s"]) == 3
    tv2d = out["tv2d"]
    assert tv2d["shape"] == [24, 24] and tv2d["f_star_lower"] <= tv2d["f_star_upper"]
    assert 1 <= tv2d["ref_iters"] <= 300  # first_order.reference's fista-restart, within --ref-max-iters
    assert tv2d["fista"]["rel_excess"] < tv2d["chambolle"]["rel_excess"]
    assert tv2d["fista-restart"]["iters_to_beat_chambolle"] is not None
