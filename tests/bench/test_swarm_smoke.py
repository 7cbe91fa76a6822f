"""Smoke test of the swarm benchmark (python -m bench.swarm): N=2, 4 MiB, fast links.

It checks that the harness runs end to end with the real daemon, that the JSON document
has every field the issue asks for, that the values are consistent with each other and
with the physics (every client finished, T_all >= T*, the server sent at least one copy),
and that nothing is left behind. It measures nothing: the figures of a run this small are
dominated by start-up latencies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bounds import Links, kumar_ross_bound, unicast_bound
from bench.units import parse_rate, parse_size
from bench.webseed import with_url_list
from boottorrentlab.devkit.agent import agent_download_command

pytestmark = pytest.mark.bench_smoke

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 2
SIZE = 4 << 20
TOP_FIELDS = ("clients", "size_bytes", "t_star_s", "boottorrent_t_all_s", "ratio_to_bound",
              "unicast_t_all_s", "unicast_bound_s", "speedup", "server_upload_bytes",
              "server_upload_ratio", "p2p_share", "goals", "modes", "parameters")
RUN_FIELDS = ("completion_s", "t_all_s", "t_first_s", "t_median_s", "server_upload_bytes",
              "clients_received_bytes", "p2p_share", "seed_first_data_s", "host_cpu_busy",
              "failures", "timeline")


def test_the_bound_and_the_units():
    links = Links(40_000_000, 40_000_000, 40_000_000, 40_000_000)
    assert parse_size("64M") == 64 << 20 and parse_size("512KiB") == 512 << 10
    assert parse_rate("40mbit") == 40_000_000 and parse_rate("1gbit") == 10**9
    # 64 MiB at 40 Mbit/s: F/u_s dominates when every link is alike (13.4 s, MEASURED.md).
    assert kumar_ross_bound(64 << 20, 16, links) == pytest.approx(13.42, abs=0.01)
    assert unicast_bound(64 << 20, 16, links) == pytest.approx(16 * 13.42, abs=0.1)
    # A slow server and fast clients: the swarm term N*F/(u_s + sum u_i) can dominate.
    slow_seed = Links(1_000_000, 10**9, 10_000_000, 10**9)
    assert kumar_ross_bound(1 << 20, 4, slow_seed) == pytest.approx(8 * (1 << 20) / 1e6)


def test_the_benchmark_runs_the_agents_own_download_command():
    command, stall = agent_download_command()
    assert command.startswith("bt-download ")
    assert "$BT_ARIA2_OPTS" in command and "$BT_TORRENT_URL" in command
    assert int(stall) > 0


def test_a_web_seed_url_list_keeps_the_infohash():
    info = b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:" + b"\x01" * 20 + b"e"
    torrent = b"d8:announce3:abc4:info" + info + b"e"
    patched = with_url_list(torrent, "http://h/files/")
    assert info in patched and b"8:url-listl15:http://h/files/e" in patched
    assert patched.index(b"4:info") < patched.index(b"8:url-list")


def test_the_harness_runs_and_writes_a_complete_consistent_json(tmp_path):
    out, png = tmp_path / "swarm.json", tmp_path / "swarm.png"
    result = subprocess.run(
        [sys.executable, "-m", "bench.swarm", "--clients", str(CLIENTS), "--size", "4M",
         "--rate", "200mbit", "--settle", "1", "--json", str(out), "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    doc = json.loads(out.read_text())

    assert not [f for f in TOP_FIELDS if f not in doc]
    assert doc["clients"] == CLIENTS and doc["size_bytes"] == SIZE
    modes = doc["modes"]
    assert {"boottorrent", "unicast"} <= set(modes)
    t_star = doc["t_star_s"]
    for mode, summary in modes.items():
        assert summary["all_finished"], (mode, [r["failures"] for r in summary["runs"]])
        for run in summary["runs"]:
            assert not [f for f in RUN_FIELDS if f not in run]
            times = run["completion_s"]
            assert len(times) == CLIENTS and all(t is not None and t > 0 for t in times)
            assert run["t_all_s"] == max(times) >= t_star, (mode, times, t_star)
            assert run["failures"] == []
            assert 0 < run["host_cpu_busy"] <= 1
            # The seed's first piece data reached a client before the last copy was done.
            assert 0 < run["seed_first_data_s"] < run["t_all_s"], (mode, run)
        assert summary["t_all_s"] >= t_star
    # The server must send every piece at least once; unicast sends one copy per client.
    assert doc["server_upload_bytes"] >= SIZE
    assert modes["unicast"]["server_upload_bytes"] >= CLIENTS * SIZE
    assert doc["boottorrent_t_all_s"] == modes["boottorrent"]["t_all_s"]
    assert doc["unicast_t_all_s"] == modes["unicast"]["t_all_s"]
    assert doc["ratio_to_bound"] == pytest.approx(doc["boottorrent_t_all_s"] / t_star, rel=1e-2)
    assert doc["speedup"] > 0
    # Ratios are rounded to 3 decimals in the document.
    assert doc["speedup"] == pytest.approx(doc["unicast_t_all_s"] / doc["boottorrent_t_all_s"],
                                           abs=1e-3)
    assert 0 <= doc["p2p_share"] <= 1
    assert set(doc["goals"]) == {"ratio_to_bound_at_most_1.25", "speedup_at_least_10",
                                 "server_upload_at_most_2F"}
    params = doc["parameters"]
    assert params["clients"] == CLIENTS and params["client_down_bps"] == 200_000_000
    assert "--bt-tracker-interval=" in params["aria2_options"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Nothing of the run is left: its namespaces, its bridge.
    tag = params["lab_tag"]
    assert f"bt-{tag}-" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                              text=True).stdout
    assert subprocess.run(["ip", "link", "show", f"btbr{tag}"], capture_output=True).returncode


def test_the_lt_client_experiment_gets_every_client_a_verified_copy(tmp_path):
    out = tmp_path / "lt.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.swarm", "--clients", str(CLIENTS), "--size", "4M",
         "--rate", "200mbit", "--settle", "1", "--modes", "lt-client", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads(out.read_text())["modes"]["lt-client"]
    # Verified: every copy was compared with the library's file after the run.
    assert summary["all_finished"], [r["failures"] for r in summary["runs"]]
    (run,) = summary["runs"]
    assert run["failures"] == [] and len(run["completion_s"]) == CLIENTS
    assert run["server_upload_bytes"] >= SIZE  # the seed sent every piece at least once
