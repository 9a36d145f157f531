"""`make bench` machinery at tiny sizes: every benchmark runs end to end on its own PostgreSQL and
Mosquitto, counts come out right (0 lost, 0 duplicated) and the results file is written.

Nothing here asserts on speed: a loaded CI machine may be as slow as it likes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.broker import mosquitto_binary

pytestmark = pytest.mark.integration


def test_bench_runs_at_tiny_sizes(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (scripts/test-deps.sh installs it)")
    from bench import run

    out, raw_json = tmp_path / "RESULTS.md", tmp_path / "results.json"
    results = run.main([
        "--quick", "--points", "2000", "--big", "200", "--pg-points", "40", "--messages", "200", "--rounds", "1",
        "--window", "50", "--latency-rate", "200", "--latency-seconds", "1", "--plan-grids", "300", "--readings", "400",
        "--pages-grids", "300", "--pages-runs", "1", "--pages-alarms", "2",
        "--output", str(out), "--json", str(raw_json),
    ])  # fmt: skip

    text = out.read_text(encoding="utf-8")
    assert f"{results['machine']['cores']} cores" in text and "## Targets" in text
    assert "met" in text and json.loads(raw_json.read_text(encoding="utf-8"))["e2e"]["raw_msg_per_s"] > 0

    for name in ("district", "tessellation"):
        routing = results["routing"][name]
        assert routing["index"]["mismatches_vs_strtree"] == 0
        assert routing["postgis"]["mismatches_vs_index"] == 0
        assert routing["postgis"]["points"] == 40

    e2e = results["e2e"]
    assert [r["received"] for r in e2e["raw"]] == [200, 200]
    for kind in ("postgis", "sqlite"):
        (r,) = e2e["runs"][kind]
        assert (r["messages"], r["count_alarms"], r["stored_rows"]) == (200, 200, 200), kind
        assert (r["lost"], r["duplicated"], r["unexpected"], r["dead_letters"]) == (0, 0, 0, 0), kind
        assert r["notifications"]["pending"] == 0, kind

    for kind in ("postgis", "sqlite"):
        r = results["latency"][kind]
        assert r["alarms"] == 200 and r["count_alarms"] == 200 and (r["lost"], r["duplicated"]) == (0, 0), kind
        assert r["incidents_created"] == 200, kind  # cooldown 0: every alarm opens an incident
        assert r["notifications_received"] == r["notifications_expected"] == 200, kind
        assert r["notification_duplicates"] == 0, kind

    plan = results["planning"]
    assert plan["validate"]["n_l3"] == 300 and plan["validate"]["findings"] == 0
    for kind in ("postgis", "sqlite"):
        assert plan[kind]["import"]["errors"] == 0 and plan[kind]["import"]["features"] > 300, kind
        assert len(plan[kind]["hot_swap"]["swap_seconds"]) == 3, kind

    dev = results["devices"]
    assert set(dev["decoders"]) >= {"alarm v1", "Frigate event", "Hikvision XML", "Zigbee2MQTT", "Contact ID"}
    assert all(d["decode_us"] > 0 and d["outputs"] >= 1 for d in dev["decoders"].values())
    for per, entry in dev["readings"].items():
        assert entry["raw"]["lost"] == 0, per
        for kind in ("postgis", "sqlite"):
            r = entry[kind]
            assert r["rows"] == r["readings"] and (r["lost"], r["duplicated"], r["dead_letters"]) == (0, 0, 0), (per, kind)
    assert "readings, postgis: MQTT → store" in text
    assert "(d) planners" in text

    pages = results["pages"]
    for part in ("first_render", "big", "marker"):
        assert "error" not in pages[part], pages[part]
    assert pages["marker"]["alarms"] == 2 and not pages["marker"]["missing"] and not pages["marker"]["console_errors"]
    walls = pages["big"]["walls"]
    assert walls["walls"] >= 2 and walls["shared"]["n"] == walls["per_request"]["n"] >= 1
    assert "walls refresh after one incident write" in text
    assert "(f) pages in headless Chromium" in text
