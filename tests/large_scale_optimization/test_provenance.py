"""provenance.py: the record every results file of large_scale_optimization opens with (issue 26)."""
import datetime
import json

import provenance


def test_command_is_the_one_typed_from_the_repository_root(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert provenance.command("train.py", ["--data", "my data.csv", "--passes", "3"]) == \
        "OMP_NUM_THREADS=1 python large_scale_optimization/train.py --data 'my data.csv' --passes 3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("sys.argv", ["/somewhere/train.py", "--passes", "3"])
    assert provenance.command("train.py", None) == "python large_scale_optimization/train.py --passes 3"


def test_record_has_date_threads_and_machine_but_no_path(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rec = provenance.provenance("bench.py", ["--threads", "1"], [1])
    date = datetime.datetime.fromisoformat(rec["date_utc"])
    assert date.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - date).total_seconds()) < 60
    assert rec["threads"] == [1] and rec["machine"]["env_threads"]["OMP_NUM_THREADS"] == "1"
    assert rec["machine"]["cpu_count"] >= 1 and len(rec["machine"]["load_average"]) == 3
    assert "/" not in json.dumps(rec["machine"])  # no folder of this machine
