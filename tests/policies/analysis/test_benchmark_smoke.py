"""The judge benchmark still runs (a few scenarios; the real run is benchmarks/judges.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "judges.py"


def test_benchmark_runs_and_writes_json(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("judges_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "out.json"
    assert (
        module.main(["--per-family", "2", "--families", "low_traffic,warmup", "--seed", "3", "--json", str(out)]) == 0
    )
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"low_traffic", "warmup"}
    assert set(data["results"]["warmup"]) == {"meshgate", "flagger", "kayenta"}
    assert "| family | judge | bad caught |" in capsys.readouterr().out
