"""A run folder written before the code moved into sub-packages still resumes, renders and exports.

tests/fixtures/premove-digits was written by `python -m nas.search` at commit 60ee916 (the last
flat layout): 4 trials of the digits space, its journal, pareto.json and weights. The run-folder
format is a contract (docs/run-folder.md): whatever the code's layout, such a folder must keep working.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import nas  # noqa: F401  (registers acmix_nas)
from nas.dashboard import render_html
from nas.export import load_exported
from nas.run.folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "premove-digits"


@pytest.fixture
def premove(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "premove-digits"))


def test_it_reads_whole_and_renders(premove: Path) -> None:
    run = RunFolder(premove)
    records = run.trials()
    assert [r.status for r in records] == ["complete"] * 4
    assert run.config().space_file == "search_spaces/digits.yaml"
    page, _ = render_html(run)
    front = json.loads((premove / "pareto.json").read_text())["front"]
    for point in front:
        assert point["arch_id"] in page


def test_it_exports_a_front_point_that_timm_loads(premove: Path, capsys) -> None:
    from nas.export import main

    assert main([str(premove), "--pick", "knee", "--out", str(premove / "exports" / "knee")]) == 0
    model = load_exported(premove / "exports" / "knee")
    again = timm.create_model(f"local-dir:{premove / 'exports' / 'knee'}", pretrained=True)
    x = torch.randn(2, 1, 16, 16)
    model.eval(), again.eval()
    torch.testing.assert_close(model(x), again(x))


@pytest.mark.slow
def test_it_resumes_without_retraining_what_it_holds(premove: Path) -> None:
    before = (premove / "trials.jsonl").read_text().splitlines()
    proc = subprocess.run(
        [sys.executable, "-m", "nas.search", "--resume", str(premove), "--budget", "6", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    after = (premove / "trials.jsonl").read_text().splitlines()
    assert after[: len(before)] == before  # appended to, never rewritten
    records = [json.loads(line) for line in after]
    assert len({r["arch_id"] for r in records}) == 6  # two new architectures, none trained twice
    assert all(r["status"] == "complete" for r in records)
