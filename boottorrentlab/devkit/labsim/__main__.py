"""`python -m boottorrentlab.devkit.labsim`: one run of the lab simulator, its summary as
JSON on stdout (and the whole run with --json); exit status 1 when a machine failed or a
report was lost."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import SimConfig
from .runner import LabSim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boottorrentlab.devkit.labsim",
                                     description="A lab of N simulated machines booting "
                                     "from the real daemon, for scale tests.")
    parser.add_argument("--machines", "-n", type=int, default=SimConfig.machines)
    parser.add_argument("--rate", type=int, default=SimConfig.rate, help="bit/s per machine")
    parser.add_argument("--server-rate", type=int, default=SimConfig.server_rate,
                        help="bit/s of the server's link")
    parser.add_argument("--size", type=int, default=SimConfig.size, help="bytes of the OS")
    parser.add_argument("--phase1", action="store_true",
                        help="fetch the phase-1 kernel and initrd over HTTP first")
    parser.add_argument("--seed-servers", type=int, default=0,
                        help="further servers in swarm.role seed")
    parser.add_argument("--stop-at-progress", type=float,
                        help="stop a server when the machines have this share of the OS")
    parser.add_argument("--stop-server", type=int, default=0,
                        help="which server --stop-at-progress stops (0: the full one)")
    parser.add_argument("--timeout", type=float, default=SimConfig.timeout,
                        help="seconds the machines may take, all together")
    parser.add_argument("--json", type=Path, help="write the result here as well")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    config = SimConfig(machines=args.machines, rate=args.rate, server_rate=args.server_rate,
                       size=args.size, phase1=args.phase1, timeout=args.timeout,
                       seed_servers=args.seed_servers, stop_at_progress=args.stop_at_progress,
                       stop_server=args.stop_server)
    sim = LabSim(config)
    with sim:
        result = sim.run()
    if not args.keep:
        sim.remove_files()
    text = json.dumps(result.document(), indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    json.dump(result.summary(), sys.stdout, indent=2)
    print()
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
