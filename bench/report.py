"""The results: medians over the runs, the JSON document, the log's summary and the plots."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.bounds import Links, kumar_ross_bound, unicast_bound
from bench.proc import say
from bench.runner import RunResult
from bench.units import human_rate, human_size

COLORS = {"boottorrent": "tab:blue", "unicast": "tab:red", "multicast": "tab:green"}


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present or len(present) < len(values):
        return None
    return round(statistics.median(present), 3)


def summarize_mode(runs: list[RunResult]) -> dict[str, Any]:
    return {
        "t_all_s": median_or_none([r.t_all_s for r in runs]),
        "t_all_s_runs": [r.t_all_s for r in runs],
        "t_median_s": median_or_none([r.t_median_s for r in runs]),
        "t_first_s": median_or_none([r.t_first_s for r in runs]),
        "server_upload_bytes": int(statistics.median([r.server_upload_bytes for r in runs])),
        "p2p_share": round(statistics.median([r.p2p_share for r in runs]), 4),
        "seed_first_data_s": median_or_none([r.seed_first_data_s for r in runs]),
        "host_cpu_busy": median_or_none([r.host_cpu_busy for r in runs]),
        "all_finished": all(not r.failures and r.t_all_s is not None for r in runs),
        "runs": [asdict(r) for r in runs],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarize(n: int, size: int, links: Links, results: dict[str, list[RunResult]],
              ) -> dict[str, Any]:
    """One client count's figures: every mode's medians, against the bounds and the goals."""
    t_star = kumar_ross_bound(size, n, links)
    modes = {mode: summarize_mode(runs) for mode, runs in results.items()}
    bt = modes.get("boottorrent", {})
    bt_t = bt.get("t_all_s")
    uni_t = modes.get("unicast", {}).get("t_all_s")
    up = bt.get("server_upload_bytes")
    doc = {
        "clients": n,
        "size_bytes": size,
        "t_star_s": round(t_star, 3),
        "unicast_bound_s": round(unicast_bound(size, n, links), 3),
        "boottorrent_t_all_s": bt_t,
        "ratio_to_bound": ratio(bt_t, t_star),
        "unicast_t_all_s": uni_t,
        "speedup": ratio(uni_t, bt_t),
        "server_upload_bytes": up,
        "server_upload_ratio": ratio(up, size),
        "p2p_share": bt.get("p2p_share"),
    }
    if "multicast" in modes:
        doc["multicast_t_all_s"] = modes["multicast"]["t_all_s"]
    doc["goals"] = {
        "ratio_to_bound_at_most_1.25": None if doc["ratio_to_bound"] is None
        else doc["ratio_to_bound"] <= 1.25,
        "speedup_at_least_10": None if doc["speedup"] is None else doc["speedup"] >= 10,
        "server_upload_at_most_2F": None if up is None else up <= 2 * size,
    }
    doc["modes"] = modes
    return doc


def _scaling_point(point: dict[str, Any]) -> dict[str, Any]:
    """A client count's figures without every run's detail (the scaling list stays short)."""
    return {k: v for k, v in point.items() if k != "modes"} | {
        "modes": {m: {"t_all_s": s["t_all_s"], "t_all_s_runs": s["t_all_s_runs"],
                      "server_upload_bytes": s["server_upload_bytes"]}
                  for m, s in point["modes"].items()}}


def document(points: list[dict[str, Any]], parameters: dict[str, Any],
             scaling: bool) -> dict[str, Any]:
    """The JSON document: the last client count's figures in full, the run's parameters,
    and with `scaling` every count's figures."""
    doc = dict(points[-1])
    doc["parameters"] = parameters
    if scaling:
        doc["scaling"] = [_scaling_point(p) for p in points]
    return doc


def log_summary(points: list[dict[str, Any]]) -> None:
    for p in points:
        say(f"N={p['clients']}: T* {p['t_star_s']} s, boottorrent "
            f"{p['boottorrent_t_all_s']} s ({p['ratio_to_bound']} x T*), unicast "
            f"{p['unicast_t_all_s']} s, speed-up {p['speedup']}, server sent "
            f"{p['server_upload_ratio']} F, p2p share {p['p2p_share']}"
            + (f", multicast {p['multicast_t_all_s']} s" if "multicast_t_all_s" in p else ""))


def all_finished(points: list[dict[str, Any]]) -> bool:
    return all(s["all_finished"] for p in points for s in p["modes"].values())


# --- plots -----------------------------------------------------------------------------------


def _pyplot() -> Any:
    # Imported only to draw: a run without --plot works without matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf_steps(ax: Any, doc: dict[str, Any]) -> None:
    n = doc["clients"]
    for mode, summary in doc["modes"].items():
        for k, run_ in enumerate(summary["runs"]):
            times = sorted(t for t in run_["completion_s"] if t is not None)
            if not times:
                continue
            xs = [0.0, *times]
            ys = [0.0, *[(j + 1) / n for j in range(len(times))]]
            label = f"{mode} (T_all median {summary['t_all_s']} s)" if k == 0 else None
            ax.step(xs, ys, where="post", color=COLORS.get(mode), alpha=0.8, label=label)


def plot_cdf(doc: dict[str, Any], links: Links, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    _cdf_steps(ax, doc)
    ax.axvline(doc["t_star_s"], color="black", ls="--",
               label=f"T* = {doc['t_star_s']:.1f} s (Kumar-Ross)")
    ax.axvline(doc["unicast_bound_s"], color="gray", ls=":",
               label=f"N*F/u_s = {doc['unicast_bound_s']:.1f} s")
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
             if t <= 1.5 * max(doc["unicast_bound_s"], doc["t_star_s"])]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("seconds since all clients started (log scale)")
    ax.set_ylabel("fraction of clients done")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"N={doc['clients']}, F={human_size(doc['size_bytes'])}, server up "
                 f"{human_rate(links.server_up)}, clients {human_rate(links.client_up)} up / "
                 f"{human_rate(links.client_down)} down", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlim(left=0.5 * min([doc["t_star_s"]] + [
        t for s in doc["modes"].values() for r in s["runs"] for t in r["completion_s"] if t]))
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _scaling_bars(ax: Any, points: list[dict[str, Any]]) -> None:
    for mode in ("boottorrent", "unicast", "multicast"):
        have = [p for p in points if p["modes"].get(mode, {}).get("t_all_s") is not None]
        if not have:
            continue
        xs = [p["clients"] for p in have]
        med = [p["modes"][mode]["t_all_s"] for p in have]
        runs = [[t for t in p["modes"][mode]["t_all_s_runs"] if t is not None] for p in have]
        lo = [m - min(r) for m, r in zip(med, runs, strict=True)]
        hi = [max(r) - m for m, r in zip(med, runs, strict=True)]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, color=COLORS[mode],
                    label=f"{mode} T_all")


def plot_scaling(points: list[dict[str, Any]], links: Links, size: int, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    ns = [p["clients"] for p in points]
    _scaling_bars(ax, points)
    grid = list(range(1, max(ns) + 1))
    ax.plot(grid, [kumar_ross_bound(size, k, links) for k in grid], "k--", label="T* (bound)")
    ax.plot(grid, [unicast_bound(size, k, links) for k in grid], ":", color="gray",
            label="N*F/u_s (unicast bound)")
    ax.set_xlabel("clients N")
    ax.set_ylabel("seconds until every client has the OS")
    ax.set_xticks(ns)
    ax.set_title(f"F={human_size(size)}, every link {human_rate(links.server_up)} "
                 "(medians, bars: min-max)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(doc: dict[str, Any], path: Path) -> None:
    """The plot of a document: T_all per N for a scaling run, else the completion CDF."""
    p = doc["parameters"]
    links = Links(p["server_up_bps"], p["server_down_bps"], p["client_up_bps"],
                  p["client_down_bps"])
    if "scaling" in doc:
        plot_scaling(doc["scaling"], links, doc["size_bytes"], path)
    else:
        plot_cdf(doc, links, path)
    say(f"wrote {path}")
