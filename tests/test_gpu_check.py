"""scripts/gpu_check.sh, the prepared GPU check: it parses, and without a GPU it says so in one line
and exits 0 (on a machine with a GPU it is run by hand: it takes minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def test_the_gpu_check_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the check would run whole")
def test_the_gpu_check_skips_cleanly_without_a_gpu(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path)},
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout == "gpu_check: no GPU (torch.cuda.is_available() is False here): skipped\n"
    assert not any(tmp_path.iterdir())  # nothing written
