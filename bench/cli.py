"""The command line: what to measure, the run from lab to report, and the cleanup."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from bench import report
from bench.bounds import Links, kumar_ross_bound
from bench.daemon import DaemonOptions, Session
from bench.modes import MODES
from bench.network import ShapedLan
from bench.proc import say
from bench.runner import Runner, RunResult, RunSettings
from bench.units import human_rate, human_size, parse_rate, parse_size
from boottorrentlab.devkit.agent import agent_download_command
from boottorrentlab.devkit.lan import sh
from boottorrentlab.devkit.shaping import tbf

PROG = "python -m bench.swarm"


def key_value(text: str) -> tuple[str, Any]:
    """'KEY=VALUE' -> (KEY, VALUE read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE; write e.g. "
                                         "tracker.announce_interval=5")
    return key.strip(), yaml.safe_load(value)


def _add_lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clients", type=int, default=16, help="number of clients N (default 16)")
    p.add_argument("--size", type=parse_size, default=parse_size("64M"),
                   help="size of the OS image F (default 64M; binary units)")
    p.add_argument("--rate", type=parse_rate, default=parse_rate("40mbit"),
                   help="rate of every link and direction unless set below (default 40mbit)")
    p.add_argument("--server-up", type=parse_rate, help="server uplink u_s (default --rate)")
    p.add_argument("--server-down", type=parse_rate, help="server downlink (default --rate)")
    p.add_argument("--client-up", type=parse_rate, help="client uplink u_i (default --rate)")
    p.add_argument("--client-down", type=parse_rate, help="client downlink d (default --rate)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per mode; the figures are medians over them (default 1)")
    p.add_argument("--modes", default="boottorrent,unicast,multicast",
                   help="comma-separated, in order (default boottorrent,unicast,multicast; "
                   "multicast is skipped when udpcast is not installed); the experiment "
                   "lt-client runs the clients on libtorrent instead of the agent's aria2c")
    p.add_argument("--scaling", metavar="N,N,...",
                   help="a scaling run: every mode for each of these client counts, e.g. "
                   "1,2,4,8,16; --plot then draws T_all per N")
    p.add_argument("--same-session", action="store_true",
                   help="run every boottorrent wave on the same boot session (by default the "
                   "session is restarted before each wave after the first); the seed then "
                   "first has to forget the machines that were complete peers before")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between the seed being ready (or the previous run) and the "
                   "clients starting (default 3)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    p.add_argument("--plot", type=Path, metavar="FILE",
                   help="write a PNG: completion-time CDF per mode (or T_all per N with "
                   "--scaling)")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="only draw --plot again from the JSON document of an earlier run")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip comparing every client's copy with the library's file")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (logs of every client) and print its path")


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="a daemon configuration key for this run (YAML value), e.g. "
                   "tracker.announce_interval=5 or boottorrent.seed_time=60; repeatable")
    p.add_argument("--piece-size", type=parse_size, metavar="SIZE",
                   help="experiment: the daemon makes the torrent with this piece length "
                   "(e.g. 64K; its configuration's library.piece_length) instead of its own "
                   "choice (128K for 64M)")
    p.add_argument("--transmission-setting", action="append", default=[], type=key_value,
                   metavar="KEY=VALUE",
                   help="experiment: a settings.json key for the daemon's transmission-daemon "
                   "(YAML value; its configuration's transmission.settings), e.g. encryption=0; "
                   "keys the seeder sets itself are refused (upload slots: --set "
                   "seeder.upload_slots=N); repeatable")
    p.add_argument("--aria2-extra", default="", metavar="OPTIONS",
                   help="experiments only: aria2c options appended to the daemon's "
                   "(BT_ARIA2_OPTS), e.g. '--bt-max-peers=80'")
    p.add_argument("--lt-slots", type=int, default=8,
                   help="experiment: unchoke slots of each lt-client client (default 8; "
                   "aria2c has 3 plus 1 optimistic)")
    p.add_argument("--web-seed", action="store_true",
                   help="experiment: clients get the daemon's torrent with a BEP 19 url-list "
                   "to the bench file server's copy of the library (same infohash)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Measure how long N clients take to get one OS from the real BootTorrent "
        "daemon (BitTorrent), from one HTTP server (unicast) and by udpcast (multicast), "
        "on shaped links in network namespaces, against the Kumar-Ross bound. Run as root "
        "from the repository root.")
    _add_lab_options(p)
    _add_output_options(p)
    _add_experiment_options(p)
    return p


@dataclass(frozen=True)
class Plan:
    """What one invocation measures."""

    links: Links
    modes: list[str]
    counts: list[int]
    repeat: int
    settings: RunSettings
    daemon: DaemonOptions


def make_plan(args: argparse.Namespace) -> Plan:
    links = Links(args.server_up or args.rate, args.server_down or args.rate,
                  args.client_up or args.rate, args.client_down or args.rate)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"unknown mode(s) {', '.join(bad)}; the modes are {', '.join(MODES)}")
    try:
        counts = [int(x) for x in args.scaling.split(",")] if args.scaling else [args.clients]
    except ValueError:
        raise SystemExit(f"--scaling {args.scaling!r}: write client counts like 1,2,4,8") from None
    if min(counts) < 1 or args.repeat < 1:
        raise SystemExit("--clients, --scaling and --repeat need whole numbers >= 1")
    settings = RunSettings(size=args.size, settle=args.settle, verify=args.verify,
                           same_session=args.same_session, aria2_extra=args.aria2_extra,
                           web_seed=args.web_seed, lt_slots=args.lt_slots)
    daemon = DaemonOptions(overrides=tuple(args.set), piece_length=args.piece_size,
                           transmission_settings=dict(args.transmission_setting))
    return Plan(links, modes, counts, args.repeat, settings, daemon)


def check_environment(modes: list[str]) -> list[str]:
    """The modes this host can run; exits with the fix when the benchmark cannot run."""
    if os.geteuid() != 0:
        raise SystemExit(f"{PROG} needs root (network namespaces, tc); run it with sudo")
    needed = ["ip", "tc", "aria2c", "curl", "transmission-daemon", "dbus-daemon"]
    missing = [prog for prog in needed if shutil.which(prog) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}; run `make deps` first")
    if "multicast" in modes and not (shutil.which("udp-sender") and shutil.which("udp-receiver")):
        say("multicast skipped: udpcast is not installed (apt-get install udpcast)")
        modes = [m for m in modes if m != "multicast"]
    return modes


def host_info() -> dict[str, str]:
    def version(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    return {
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
        "aria2c": version("aria2c", "--version"),
        "transmission": version("transmission-daemon", "--version"),
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def interrupts_as_exit() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does: through the cleanup in `finally`."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Bench:
    """Everything a run creates (tmpfs, lab, daemon, file server); close() removes it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.work = Path(tempfile.mkdtemp(prefix="bt-bench-"))
        self.mounted = False
        self.lab: ShapedLan | None = None
        self.session: Session | None = None
        self.runner: Runner | None = None

    def setup(self) -> Runner:
        plan, links, size = self.plan, self.plan.links, self.plan.settings.size
        # The clients' copies live in RAM, as in phase-1 (a tmpfs per machine there), with
        # aria2c's logs: at N=64 each logs some 30 MiB of peer messages.
        (self.work / "data").mkdir()
        tmpfs = max(plan.counts) * (size * 11 // 10 + (64 << 20)) + (64 << 20)
        sh("mount", "-t", "tmpfs", "-o", f"size={tmpfs},mode=0755", "bt-bench",
           str(self.work / "data"))
        self.mounted = True
        say(f"lab: {max(plan.counts)} clients, server up {human_rate(links.server_up)}, "
            f"clients {human_rate(links.client_up)} up / {human_rate(links.client_down)} "
            f"down, F = {human_size(size)}")
        self.lab = ShapedLan(links)
        tag = self.lab.lan.tag
        say(f"lab tag {tag}: bridge btbr{tag} in namespace bt-{tag}-lan, namespaces bt-{tag}-*, "
            f"subnet {self.lab.lan.subnet}")
        self.lab.build(max(plan.counts))
        self.session = Session(self.lab, self.work, size, plan.daemon)
        self.session.start()
        self.runner = Runner(plan.settings, self.lab, self.session, self.work)
        return self.runner

    def close(self, keep: bool) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.session is not None:
            self.session.stop()
        if self.lab is not None:
            self.lab.close()
        if self.mounted:
            sh("umount", "-l", str(self.work / "data"), check=False)
        if keep:
            say(f"work folder kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def _log_run(result: RunResult, size: int, links: Links) -> None:
    t_star = kumar_ross_bound(size, result.clients, links)
    t_all = result.t_all_s if result.t_all_s is not None else "n/a"
    say(f"{result.mode}: N={result.clients} T_all {t_all} s (T* {t_star:.1f} s), server sent "
        f"{result.server_upload_bytes / size:.2f} F, p2p share {result.p2p_share:.2f}"
        + (f"; FAILURES: {result.failures}" if result.failures else ""))


def measure(plan: Plan, runner: Runner) -> list[dict[str, Any]]:
    """Every mode `plan.repeat` times for every client count; one summary per count."""
    points = []
    for n in plan.counts:
        results: dict[str, list[RunResult]] = {m: [] for m in plan.modes}
        for rep in range(plan.repeat):
            for mode in plan.modes:
                time.sleep(plan.settings.settle)
                say(f"{mode}: N={n}, run {rep + 1}/{plan.repeat}")
                result = MODES[mode](runner, n, rep)
                results[mode].append(result)
                _log_run(result, plan.settings.size, plan.links)
        points.append(report.summarize(n, plan.settings.size, plan.links, results))
    return points


def _boot_env_value(boot_env: str, name: str) -> str | None:
    m = re.search(rf"^{name}='([^']*)'", boot_env, re.MULTILINE)
    return m.group(1) if m else None


def parameters(args: argparse.Namespace, plan: Plan, bench: Bench, boot_env: str,
               started: dt.datetime) -> dict[str, Any]:
    """What the document records of how it was made."""
    links = plan.links
    assert bench.lab is not None and bench.session is not None
    return {
        "clients": plan.counts if args.scaling else plan.counts[-1],
        "size_bytes": args.size,
        "server_up_bps": links.server_up, "server_down_bps": links.server_down,
        "client_up_bps": links.client_up, "client_down_bps": links.client_down,
        "repeat": args.repeat, "modes": plan.modes,
        "shaping": f"tc {' '.join(tbf(links.server_up))} on both ends of every veth",
        "daemon_config": bench.session.config,
        "agent_command": agent_download_command()[0],
        "aria2_options": _boot_env_value(boot_env, "BT_ARIA2_OPTS"),
        "aria2_extra": args.aria2_extra,
        "web_seed": args.web_seed,
        "lt_slots": args.lt_slots,
        "piece_size_override": args.piece_size,
        "transmission_settings": plan.daemon.transmission_settings,
        "seed_time_s": _boot_env_value(boot_env, "BT_SEED_TIME"),
        "settle_s": args.settle,
        "session_per_wave": not args.same_session,
        "lab_tag": bench.lab.lan.tag,
        "started": started.isoformat(timespec="seconds"),
        "host": host_info(),
        "note": "one 2-core machine shared with other work: figures are noisy",
    }


def _run(args: argparse.Namespace, bench: Bench) -> int:
    plan = bench.plan
    started = dt.datetime.now(dt.UTC)
    runner = bench.setup()
    assert bench.session is not None
    boot_env = bench.session.boot_env()
    points = measure(plan, runner)
    runner.stop()
    doc = report.document(points, parameters(args, plan, bench, boot_env, started),
                          scaling=bool(args.scaling))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        say(f"wrote {args.json}")
    if args.plot:
        report.plot(doc, args.plot)
    report.log_summary(points)
    return 0 if report.all_finished(points) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    if args.replot:
        if not args.plot:
            raise SystemExit("--replot needs --plot FILE")
        report.plot(json.loads(args.replot.read_text()), args.plot)
        return 0
    bench = Bench(replace(plan, modes=check_environment(plan.modes)))
    try:
        with interrupts_as_exit():
            return _run(args, bench)
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bench.close(args.keep)
        signal.signal(signal.SIGINT, signal.default_int_handler)
