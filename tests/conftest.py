"""What every test module shares: the `slow` tier, the session's small run folder, and a seeded
torch generator per test.

`python -m pytest -m "not slow"` is the edit-test loop: it leaves out the tests marked `slow` (they
start a Ray cluster or a search in a subprocess, drive a headless browser, or kill and resume a
run). `python -m pytest` runs everything.

Every test starts from `torch.manual_seed(0)`, so what an unseeded `torch.randn` draws does not
depend on which tests ran before it (a bfloat16 tolerance once failed in CI on such a draw).
"""

import pytest
import torch

from runs import small_run  # noqa: F401  (the session's run folder, built once, for any test that asks for it)


@pytest.fixture(autouse=True)
def _seeded_torch():
    torch.manual_seed(0)
