"""What every test module shares: the `slow` tier and the session's small run folder.

`python -m pytest -m "not slow"` is the edit-test loop: it leaves out the tests marked `slow` (they
start a Ray cluster or a search in a subprocess, drive a headless browser, or kill and resume a
run). `python -m pytest` runs everything.
"""

from runs import small_run  # noqa: F401  (the session's run folder, built once, for any test that asks for it)
