"""The dashboard of a real (small) run: the files, what they hold, a real browser, optuna-dashboard."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest

from nas.dashboard import CostPlot, RunData, TrialView, main, render_html, write_dashboard
from nas.net.arch import Arch
from nas.net.model import describe_block
from nas.run import pareto
from nas.run.archive import ArchResult
from nas.run.folder import RunFolder
from nas.search.report import listed
from runs import copy_run, record_of, synthetic_run

ROOT = Path(__file__).resolve().parents[1]


def _script_json(page: str, element_id: str):
    m = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def _peeled_ranks(records, objectives):
    """Front ranks by peeling Pareto fronts off one after another (independent of the dashboard's)."""
    left, ranks, k = pareto.candidates(records, objectives), {}, 0
    while left:
        front = {r.number for r in pareto.front(left, objectives)}
        ranks.update({n: k for n in front})
        left = [r for r in left if r.number not in front]
        k += 1
    return ranks


def test_dashboard_files_and_contents(small_run, tmp_path, capsys):
    run = RunFolder(small_run)
    records = run.trials()
    out = tmp_path / "out"
    assert main([str(small_run), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = (out / "dashboard.html").read_text()

    # self-contained: plotly.js inline, nothing fetched from anywhere
    assert "window.Plotly" in page and len(page) > 3_000_000
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<img[^>]+src=|@import", page)

    figs = _script_json(page, "figures")
    assert list(figs) == ["macs", "params", "hypervolume"]  # the run's cost first, then the others measured
    ranks = _peeled_ranks(records, ["accuracy", "macs"])
    assert ranks and max(ranks.values()) >= 1
    by_num = {r.number: r for r in records}
    for cost in ("macs", "params"):
        traces = [t for t in figs[cost]["data"] if "markers" in t["mode"]]
        numbers = [n for t in traces for n in t["customdata"]]
        assert sorted(numbers) == [r.number for r in records]  # every finished trial is a point
        for t in traces:
            for n, x, y in zip(t["customdata"], t["x"], t["y"]):
                assert x == by_num[n].value(cost) and y == (by_num[n].accuracy or 0.0)
        colored = next(t for t in traces if t["name"].startswith("complete"))
        assert dict(zip(colored["customdata"], colored["marker"]["color"])) == ranks
        names = {t["name"].split(" ")[0] for t in traces}
        assert {"complete", "stopped", "failed", "infeasible"} <= names
        front_line = next(t for t in figs[cost]["data"] if t["mode"] == "lines")
        assert front_line["x"] == [r.value(cost) for r in pareto.front(records, ["accuracy", cost])]
    # hover: arch id, metrics, and the per-block map with the learned alpha/beta of the record
    acmix = next(r for r in records if r.status == "complete" and r.rates)
    text = next(
        tx
        for t in figs["macs"]["data"]
        if t.get("customdata")
        for n, tx in zip(t["customdata"], t["text"])
        if n == acmix.number
    )
    assert acmix.arch_id in text and "accuracy" in text and "macs" in text
    rate = acmix.rates[0]
    assert f"s{rate['stage']}.b{rate['index']} ACmix" in text and f"α{rate['alpha']:.2f} β{rate['beta']:.2f}" in text
    assert all(describe_block(b) in text for b in run.block_map(acmix))
    conv = Arch.from_dict(records[0].arch)
    assert records[0].reference == "all_conv" and all(b["op"] == "conv" for b in conv.block_map())
    # hypervolume over trials, as results computes it
    hv = next(t for t in figs["hypervolume"]["data"])
    assert hv["y"] == pytest.approx(
        pareto.hypervolume_history(records, ["accuracy", "macs"], run.config().hypervolume_scale)
    )
    # the front table, the failed trial's error in the table of all trials
    for r in run.front():
        assert f"--arch-id {r.arch_id}" in page
    failed = next(r for r in records if r.status == "failed")
    assert "non-finite training loss" in failed.error and failed.error in page

    png = matplotlib.image.imread(out / "pareto.png")
    assert png.shape[0] > 300 and png.shape[1] > 600


def test_dashboard_of_a_run_in_progress(small_run, tmp_path, capsys):
    # 0 trials, 1 trial, and a torn last line (a writer caught mid-append)
    for n in (0, 1):
        run = copy_run(small_run, tmp_path / f"run{n}", n_lines=n)
        assert main([str(run)]) == 0
        page = (run / "dashboard.html").read_text()
        assert f"{n} trials" in page and (run / "pareto.png").stat().st_size > 1000
        figs = _script_json(page, "figures")
        assert sum(len(t["customdata"]) for t in figs["macs"]["data"] if "markers" in t["mode"]) == n
    assert "No finished trials yet" in (tmp_path / "run0" / "dashboard.html").read_text()
    run = copy_run(small_run, tmp_path / "torn", n_lines=3)
    with open(run / "trials.jsonl", "a") as f:
        f.write(((small_run / "trials.jsonl").read_text().splitlines()[3])[:50])
    assert main([str(run), "--no-png"]) == 0
    assert "3 trials" in (run / "dashboard.html").read_text()
    capsys.readouterr()
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run folder" in err


def test_one_read_and_one_front_per_cost_for_the_page_and_the_png(small_run, tmp_path, monkeypatch):
    run = RunFolder(small_run)
    data = RunData.read(run)
    # the front summary is pareto.json's, from the Archive (the run's scales are complete here)
    assert json.loads(json.dumps(data.summary)) == json.loads((small_run / "pareto.json").read_text())
    assert data.hypervolume == data.summary["hypervolume"] == data.hypervolumes[-1]
    assert data.costs == ["macs", "params"] and data.plot("macs") is data.plot("macs")
    assert data.plot("macs").front == data.archive.front()  # the run's own objectives: the Archive's front
    for cost in data.costs:
        assert data.plot(cost).front == pareto.front(data.archive.architectures, ["accuracy", cost])

    reads, fronts = [], []
    real_trials, real_front = RunFolder.trials, pareto.front
    monkeypatch.setattr(RunFolder, "trials", lambda self, *a, **k: reads.append(1) or real_trials(self, *a, **k))
    monkeypatch.setattr(pareto, "front", lambda pts, objs: fronts.append(list(objs)) or real_front(pts, objs))
    files = write_dashboard(run, tmp_path)
    assert files.png is not None and len(reads) == 1
    assert fronts == [["accuracy", "params"]]  # macs: the Archive's; params: once for both files


def test_the_front_table_is_the_archive_summary_of_a_seeded_run(tmp_path):
    run = RunFolder(synthetic_run(tmp_path / "run", 300))
    data = RunData.read(run)
    page, summary = render_html(run, data)
    front = data.summary["front"]
    assert summary["front"] == len(front) and f"Pareto front ({len(front)} of 300 trials)" in page
    assert any(a["seeds"] > 1 for a in front) and any(not a["separable"] for a in front)
    for a in front:
        assert f"--arch-id {a['arch_id']}" in page
        assert ("⚠ within noise of " + listed(a["unseparable_from"])) in page or a["separable"]
        if a["seeds"] > 1:
            assert f"{100 * a['accuracy']:.2f}% ± {100 * a['accuracy_se']:.2f}% ({a['seeds']} seeds)" in page
    for cost in data.costs:  # every architecture's mean, once per plot; the 2-D front of the means
        plot = data.plot(cost)
        assert plot.front == pareto.front(data.archive.architectures, ["accuracy", cost])
        assert len(plot.points) + plot.missing == len(data.archive) == len(data.views)


@pytest.mark.parametrize(
    "macs, log", [([1000, 1004], False), ([1000, 30_000], True), ([0, 1000, 1500], False), ([], False)]
)
def test_a_cost_axis_is_logarithmic_beyond_a_factor_of_20(macs, log):
    views = [TrialView(ArchResult([record_of(i, macs=m)]), "ranked", 0) for i, m in enumerate(macs)]
    assert CostPlot("macs", views, [], 0).log is log


class _PointCounter(HTMLParser):
    """Counts the markers plotly drew (<path class="point">) inside each <div id="plot-...">."""

    def __init__(self):
        super().__init__()
        self.stack: list[str | None] = []
        self.points: dict[str, int] = {}
        self.text: dict[str, str] = {}
        self._capture: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("path", "br", "img", "input", "meta", "link"):  # void in the dumped DOM
            owner = next((s for s in reversed(self.stack) if s), None)
            if tag == "path" and owner and "point" in (a.get("class") or "").split():
                self.points[owner] = self.points.get(owner, 0) + 1
            return
        pid = a.get("id") or ""
        self.stack.append(pid if tag == "div" and pid.startswith("plot-") else None)
        self._capture = pid if pid in ("render-status", "n-points", "js-errors") else None

    def handle_endtag(self, tag):
        self._capture = None
        if tag not in ("path", "br", "img", "input", "meta", "link") and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self._capture:
            self.text[self._capture] = self.text.get(self._capture, "") + data


def _chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)


def _headless_chromium(tmp_path: Path, *flags: str) -> list[str]:
    """A headless Chromium command line, offline and with its own profile under tmp_path, then `flags`."""
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        *flags,
    ]


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (CI installs Debian chromium in .ci/run)")
def test_page_in_headless_chromium(small_run, tmp_path):
    run = RunFolder(small_run)
    records = run.trials()
    out = tmp_path / "out"
    assert main([str(small_run), "--out", str(out), "--no-png"]) == 0
    cmd = _headless_chromium(
        tmp_path,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
        "--dump-dom",
        (out / "dashboard.html").as_uri(),
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # the page logs nothing: no errors, no warnings
    dom = _PointCounter()
    dom.feed(proc.stdout)
    assert dom.text.get("render-status") == "rendered", dom.text
    assert not dom.text.get("js-errors", "").strip()
    # what plotly drew: one marker per finished trial in each accuracy-vs-cost plot
    assert dom.points["plot-macs"] == len(records) == 8
    assert dom.points["plot-params"] == sum(r.params is not None for r in records)
    assert dom.text["n-points"] == str(len(records))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_starts_optuna_dashboard_on_localhost(small_run, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nas.dashboard",
            str(small_run),
            "--serve",
            "--port",
            str(port),
            "--out",
            str(tmp_path),
            "--no-png",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, studies = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as resp:
                    studies = json.loads(resp.read())["study_summaries"]
                break
            except OSError:
                time.sleep(0.5)
        assert studies is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert [s["study_name"] for s in studies] == ["acmix-nas"]
        assert [d.lower() for d in studies[0]["directions"]] == ["maximize", "minimize"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}", timeout=10) as r:
            trials = json.loads(r.read())["trials"]
        states = sorted({t["state"].lower() for t in trials})
        assert len([t for t in trials if t["state"].lower() == "complete"]) == 5 and "fail" in states
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = proc.stdout.read()
    assert f"http://127.0.0.1:{port}/" in out and (tmp_path / "dashboard.html").is_file()


def test_a_taken_port_is_refused_before_anything_says_serving(small_run, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([str(small_run), "--serve", "--port", str(port), "--out", str(tmp_path), "--no-png"]) == 2
    out, err = capsys.readouterr()
    assert "serving" not in out and not (tmp_path / "dashboard.html").exists()
    assert err.count("\n") == 1 and f"cannot serve on 127.0.0.1:{port}" in err


@pytest.mark.parametrize("argv, words", [(["--port", "x"], "invalid int value: 'x'"), (["--bogus"], "unrecognized")])
def test_argparse_errors_are_one_line(small_run, capsys, argv, words):
    assert main([str(small_run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (CI installs Debian chromium in .ci/run)")
def test_a_10000_trial_run_renders_in_headless_chromium(tmp_path):
    """A big run (synthetic records, tests/runs.py): the page holds every point and a browser
    draws it; the screenshot shows the plots, not a blank page."""
    from runs import synthetic_run

    path = synthetic_run(tmp_path / "big", 10_000)
    records = RunFolder(path).trials()
    archs = {r.arch_id for r in records}
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out)]) == 0
    page = (out / "dashboard.html").read_text()
    figs = _script_json(page, "figures")
    assert sum(len(t["customdata"]) for t in figs["macs"]["data"] if "markers" in t["mode"]) == len(archs)
    assert len(next(iter(figs["hypervolume"]["data"]))["y"]) == len(records) == 10_000
    shot = tmp_path / "shot.png"
    cmd = _headless_chromium(tmp_path, "--virtual-time-budget=60000", "--window-size=1400,2400", "--hide-scrollbars")
    proc = subprocess.run(
        [*cmd, "--dump-dom", (out / "dashboard.html").as_uri()], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _PointCounter()
    dom.feed(proc.stdout)
    assert dom.text.get("render-status") == "rendered", dom.text
    assert dom.points["plot-macs"] == len(archs)  # every architecture drawn in the browser
    proc = subprocess.run(
        [*cmd, f"--screenshot={shot}", (out / "dashboard.html").as_uri()], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    img = matplotlib.image.imread(shot)[..., :3]
    coloured = (img.max(axis=2) - img.min(axis=2)) > 0.25  # plasma markers, not grey text or white page
    assert coloured.mean() > 0.002, coloured.mean()
