"""`twin demo` as a user runs it: a subprocess with the simulated line, the embedded broker, the twin and the page.

One demo run serves every test of this module: headless Chromium loads the live page while the demo runs and
must see segments and predictions; the demo's JSON summary must account for every value the simulated line
published (stored exactly once, or dead-lettered with a reason); `twin segments` must read its store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

pytestmark = pytest.mark.integration

TWIN = [sys.executable, "-m", "twin.cli"]
DURATION = 45


def _chromium() -> str | None:
    """Debian's chromium; installed by the test setup if missing (skip only if that is impossible)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900)
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    store = work / "demo.sqlite"
    proc = subprocess.Popen(TWIN + ["demo", "--duration", str(DURATION), "--store", str(store), "--port", "0",
                                    "--samples", "10000", "--json"],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = None
    lines = []
    end = time.monotonic() + 90
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"live page: (http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("demo did not print its page address:\n" + "".join(lines) + proc.stderr.read())
    state = {"url": url, "proc": proc, "store": store, "work": work, "stderr": lines}
    yield state
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _finish(demo) -> dict:
    if "summary" not in demo:
        out, err = demo["proc"].communicate(timeout=DURATION + 120)
        demo["stderr"].append(err)
        assert demo["proc"].returncode == 0, "".join(demo["stderr"])
        demo["summary"] = json.loads(out)
    return demo["summary"]


def test_live_page_in_headless_chromium_shows_segments(demo):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and cannot be installed here (not root or no apt-get)")
    url = demo["url"]
    # wait until the twin has predictions to show (the first segment is predicted a few seconds in)
    end = time.monotonic() + 40
    while time.monotonic() < end:
        segs = json.loads(urllib.request.urlopen(url + "api/segments?last=5", timeout=5).read())["segments"]
        if any(s["prediction"] for s in segs):
            break
        time.sleep(0.5)
    profile = tempfile.mkdtemp(prefix="twin-chromium-")
    try:
        res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=8000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = res.stdout
    assert "electrode-twin" in dom, res.stderr[-2000:]
    rows = re.findall(r'<tr data-key="line1/(\d+)" data-segment="\d+"', dom)
    assert rows, "no segment rows in the rendered table:\n" + dom[-3000:]
    n = int(re.search(r'id="n-segments">(\d+)<', dom).group(1))
    assert n >= 1
    assert re.search(r'id="received">\d+<', dom) and 'id="received">0<' not in dom
    assert 'class="main-svg"' in dom            # plotly (served locally) drew the charts


def test_demo_summary_accounts_for_every_published_value(demo):
    st = _finish(demo)
    sim = st["simulator"]
    ing = st["ingest"]
    assert sim["simulated"] is True and sim["published_total"] > 100
    # every value the line published for the twin arrived and was stored once or dead-lettered with a reason
    assert ing["received"] == sim["published_total"]
    assert ing["received"] == ing["stored"] + ing["duplicates"] + ing["dead_lettered"]
    assert st["counts"]["measurements"] == ing["stored"]
    assert st["counts"]["dead_letters"] == ing["dead_lettered"] - ing["dead_letters_repeated"]
    assert ing["pending"] == 0 and st["dirty_segments"] == 0
    assert st["counts"]["segments"] >= 10 and st["predictions"] >= 10
    assert st["samples"] == 10_000
    per_name = {}
    for key, n in sim["published"].items():
        _transport, station, name = key.split("/")
        per_name[(station, name)] = per_name.get((station, name), 0) + n
    import sqlite3

    con = sqlite3.connect(demo["store"])
    stored = dict(((s, n), c) for s, n, c in con.execute(
        "SELECT station, name, COUNT(*) FROM measurements GROUP BY station, name"))
    dead = dict(((s, n), c) for s, n, c in con.execute(
        "SELECT station, name, COUNT(*) FROM dead_letters GROUP BY station, name"))
    reasons = [r for (r,) in con.execute("SELECT reason FROM dead_letters")]
    con.close()
    for key, n in per_name.items():
        assert stored.get(key, 0) + dead.get(key, 0) == n, key
    assert all(reasons)


def test_segments_command_reads_the_demo_store(demo):
    _finish(demo)
    res = subprocess.run(TWIN + ["segments", "--store", str(demo["store"]), "--last", "5", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    segs = doc["segments"]
    assert len(segs) == 5
    assert [s["segment"] for s in segs] == sorted((s["segment"] for s in segs), reverse=True)
    pred = next(s["prediction"] for s in segs if s["prediction"])
    for name in ("m_wet", "m_dry", "h_cal", "rho_cal", "eps_cal"):
        q = pred["quantities"][name]
        assert q["p05"] <= q["p50"] <= q["p95"] and q["std"] >= 0 and "hist" not in q
    assert pred["n_samples"] == 10_000


def test_a_second_run_resumes_the_store(demo):
    """Restarting the twin resumes: the web position and segments continue, nothing is stored twice."""
    first = _finish(demo)
    res = subprocess.run(TWIN + ["demo", "--duration", "8", "--store", str(demo["store"]), "--port", "0",
                                 "--samples", "2000", "--json", "--no-step"],
                         cwd=demo["work"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    st = json.loads(res.stdout)
    assert st["resumed"]["lines"]["line1"]["speed_points"] >= 1
    assert st["counts"]["measurements"] == first["counts"]["measurements"] + st["ingest"]["stored"]
    assert st["ingest"]["received"] == st["simulator"]["published_total"]
