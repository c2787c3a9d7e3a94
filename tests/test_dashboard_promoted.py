"""The dashboard of a promoted run: which training scored each point, the promoted points apart from
those the proxy alone scored (and where the proxy had them), and the in-search check as the search's
last lines say it; a run without promotion keeps its page as it was (no promotion section, no
'scored by' column, one trace of ranked points)."""

from __future__ import annotations

import json
import re

import pytest

from nas.dashboard import main
from nas.run.archive import aggregate
from nas.search.report import promotion_lines
from test_export_promoted import promote_by_hand


def _figures(page: str) -> dict:
    m = re.search(r'<script id="figures" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def promoted(small_run, tmp_path_factory):
    return promote_by_hand(small_run, tmp_path_factory.mktemp("promoted-dash") / "run")


def test_the_page_of_a_promoted_run_shows_the_rungs_and_the_check(promoted, tmp_path):
    out = tmp_path / "out"
    assert main([str(promoted.path), "--out", str(out)]) == 0
    page = (out / "dashboard.html").read_text()
    summary = json.loads((promoted.path / "pareto.json").read_text())
    assert summary["rung"] == 1 and summary["fidelity"]["architectures"] == 2

    # the check, as the search's last lines say it
    assert "<h2>Promotion: the front at rung 1</h2>" in page
    import html

    for line in promotion_lines(summary, promoted.trials(), promoted.path):
        assert html.escape(line) in page
    assert "Kendall τ" in page and "test-retest τ" in page and "stay on its front" in page

    # the front table says which training scored each point
    assert '<th class="l">scored by</th>' in page
    images = promoted.config().ladder[1]["train_images"]
    assert f"rung 1, promoted: all {images:,} training images" in page

    # the figures: promoted points apart from the proxy's, and where the proxy had them
    macs = _figures(page)["macs"]["data"]
    names = [t.get("name") for t in macs]
    assert "the proxy's score of a promoted point" in names
    assert "promoted, scored at rung 1+ (colour: front rank)" in names and "scored by the proxy alone" in names
    promoted_trace = macs[names.index("promoted, scored at rung 1+ (colour: front rank)")]
    assert len(promoted_trace["x"]) == 2 and set(promoted_trace["marker"]["symbol"]) <= {"diamond", "star"}
    hover = " ".join(promoted_trace["text"])
    assert "scored by rung 1, promoted" in hover
    proxy_trace = macs[names.index("scored by the proxy alone")]
    assert all("scored by rung 0, the proxy" in t for t in proxy_trace["text"])
    rings = macs[names.index("the proxy's score of a promoted point")]
    proxy_means = {
        a.arch_id: sum(float(r.accuracy) for r in a.records if r.rung == 0) / sum(r.rung == 0 for r in a.records)
        for a in aggregate(promoted.trials())
        if a.rung == 1
    }
    assert sorted(y for y in rings["y"][0::3]) == pytest.approx(sorted(proxy_means.values()))


def test_a_run_without_promotion_has_no_rung_on_its_page(small_run, tmp_path):
    out = tmp_path / "out"
    assert main([str(small_run), "--out", str(out)]) == 0
    page = (out / "dashboard.html").read_text()
    assert "Promotion:" not in page and "scored by" not in page
    names = [t.get("name") for t in _figures(page)["macs"]["data"]]
    assert "complete (colour: front rank)" in names and "the proxy's score of a promoted point" not in names
