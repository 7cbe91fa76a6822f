"""boottorrentctl: drive boottorrentd over D-Bus (a thin client: the daemon owns state)."""

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boottorrentd import api
from boottorrentd.bus.backend import Variant

from .bus import Client, CtlError, unwrap
from .records import child_records, client_record, os_record, seed_records

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


async def _os_records(client: Client) -> list[dict[str, Any]]:
    objects = await client.managed_objects()
    records = [os_record(ifaces[api.OS_IFACE]) for path, ifaces in objects.items()
               if api.OS_IFACE in ifaces]
    return sorted(records, key=lambda r: r["name"])


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}min {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}min"


async def _clients(client: Client) -> list[dict[str, Any]]:
    objects = await client.managed_objects()
    records = [client_record(ifaces[api.CLIENT_IFACE]) for ifaces in objects.values()
               if api.CLIENT_IFACE in ifaces]
    return sorted(records, key=lambda r: r["mac"])



async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    props = await client.properties(api.MANAGER_PATH, api.MANAGER_IFACE)
    oss = await _os_records(client)
    clients = await _clients(client)
    stages: dict[str, int] = {}
    for c in clients:
        stages[c["stage"] or "unknown"] = stages.get(c["stage"] or "unknown", 0) + 1
    host_ip, _, prefix = props["HostAddress"].partition("/")
    status = {
        "version": props["Version"],
        "state": props["State"],
        "reason": props["StateReason"],
        "interface": props["Interface"],
        "host_ip": host_ip,
        "prefix_length": int(prefix),
        "http_port": props["HTTPPort"],
        "children": child_records(props),
        "seeding": seed_records(props),
        "clients": {"total": len(clients), "by_stage": stages},
        "config_file": props["ConfigFile"],
        "state_directory": props["StateDirectory"],
        "runtime_directory": props["RuntimeDirectory"],
        "os_count": len(oss),
        "library_bytes": sum(o["size_bytes"] for o in oss),
    }
    if args.json:
        _print_json(status)
        return 0
    reason = f" ({status['reason']})" if status["reason"] else ""
    print(f"boottorrentd {status['version']}: {status['state']}{reason}")
    print(f"  boot network: {status['interface']} {props['HostAddress']}, "
          f"HTTP port {status['http_port']}")
    print(f"  config:       {status['config_file']}")
    print(f"  library:      {status['state_directory']}  "
          f"({len(oss)} OS, {human_size(status['library_bytes'])})")
    for child in status["children"]:
        print(f"  {child['name']:<12}  {child['state']:<8} pid {child['pid'] or '-':<7} "
              f"up {_duration(child['uptime_s']):<10} restarts {child['restarts']}")
    for seed in status["seeding"]:
        print(f"  seeding {seed['name']}: {seed['status']}, {seed['peers']} peers, "
              f"{human_size(seed['uploaded_bytes'])} uploaded")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(stages.items()))
    print(f"  clients:      {len(clients)}" + (f" ({summary})" if summary else ""))
    return 0


async def cmd_start(client: Client, args: argparse.Namespace) -> int:
    await client.call("StartSession")
    props = await client.properties(api.MANAGER_PATH, api.MANAGER_IFACE)
    reason = f": {props['StateReason']}" if props["StateReason"] else ""
    print(f"Boot session {props['State']} on {props['Interface']} ({props['HostAddress']})"
          f"{reason}.")
    return 0


async def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    await client.call("StopSession")
    print("Boot session stopped.")
    return 0


async def cmd_reload(client: Client, args: argparse.Namespace) -> int:
    applied, pending = await client.call("Reload")
    props = await client.properties(api.MANAGER_PATH, api.MANAGER_IFACE)
    print(f"Read {props['ConfigFile']} again: "
          + (f"changed {', '.join([*applied, *pending])}." if applied or pending
             else "no change."))
    if props["StateReason"] and props["State"] in ("running", "degraded"):
        print(f"Session {props['State']}: {props['StateReason']}.")
    return 0


def _clients_table(clients: list[dict[str, Any]]) -> "Table":
    from rich.progress_bar import ProgressBar as Bar
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for title in ("MAC", "IP", "OS", "STAGE", "PROGRESS"):
        table.add_column(title, no_wrap=True)
    for title in ("", "DOWN/s", "UP/s", "PEERS"):
        table.add_column(title, justify="right", no_wrap=True)
    for c in clients:
        # An imaged machine boots its disk: its OS is the one written there.
        os_name = f"{c['imaged_os']} (disk)" if c["imaged_os"] else \
            c["os"] or c["assigned_os"] or "-"
        table.add_row(c["mac"], c["ip"] or "-", os_name,
                      c["stage"] or "-", Bar(total=1.0, completed=c["progress"], width=20),
                      f"{c['progress']:.0%}", human_size(c["down_rate"]),
                      human_size(c["up_rate"]), str(c["peers"]))
    return table


def _print_clients(console: "Console", clients: list[dict[str, Any]]) -> None:
    if not clients:
        console.print("No clients yet: they appear when they ask for an address or a boot "
                      "script.", highlight=False)
        return
    table = _clients_table(clients)
    if not console.is_terminal:
        # A pipe has no width: rich would assume 80 columns and crop the rows.
        unbounded = console.options.update_width(1000)
        console.width = console.measure(table, options=unbounded).maximum
    console.print(table)
    for c in clients:
        if c["error"]:
            console.print(f"{c['mac']}  error: {c['error']}", highlight=False, markup=False)


def _stage_summary(clients: list[dict[str, Any]]) -> str:
    """One line over many rows: how many machines at each stage, and the total rates."""
    stages: dict[str, int] = {}
    for c in clients:
        stages[c["stage"] or "seen"] = stages.get(c["stage"] or "seen", 0) + 1
    counts = ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
    down = sum(c["down_rate"] for c in clients)
    up = sum(c["up_rate"] for c in clients)
    return (f"{len(clients)} clients: {counts}; down {human_size(down)}/s, "
            f"up {human_size(up)}/s")


def _draw_watch(console: "Console", clients: list[dict[str, Any]]) -> None:
    """The summary and as many rows as the terminal holds, failed machines first."""
    console.clear()  # on a terminal; a pipe gets one table after the other
    if not console.is_terminal:
        console.print()
    if not clients:
        _print_clients(console, clients)
        return
    console.print(_stage_summary(clients), highlight=False)
    rows = sorted(clients, key=lambda c: (c["stage"] != "failed", c["mac"]))
    # The summary, the table's header, a line for what does not fit, the cursor's line.
    room = max(1, console.height - 4) if console.is_terminal else len(rows)
    shown = rows[:room] if len(rows) > room else rows
    _print_clients(console, shown)
    if len(shown) < len(rows):
        console.print(f"... and {len(rows) - len(shown)} more (a taller terminal shows "
                      "them; 'boottorrentctl clients --json' lists all)", highlight=False)


async def cmd_clients(client: Client, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(await _clients(client))
        return 0
    # rich costs 50-70 ms to import: only the commands that draw load it.
    from rich.console import Console

    console = Console()
    if not args.watch:
        _print_clients(console, await _clients(client))
        return 0
    # The table follows the daemon's signals; it is drawn again at most every --interval.
    changed = asyncio.Event()
    objects = await client.follow_clients(lambda _: changed.set())
    while True:
        changed.clear()
        _draw_watch(console, [client_record(props) for props in objects.values()])
        await changed.wait()
        await asyncio.sleep(args.interval)


async def cmd_assign(client: Client, args: argparse.Namespace) -> int:
    await client.call("AssignClient", "ss", [args.mac, args.os])
    print(f"{args.mac} boots {args.os} from now on, without the menu.")
    return 0


async def cmd_unassign(client: Client, args: argparse.Namespace) -> int:
    await client.call("UnassignClient", "s", [args.mac])
    print(f"{args.mac} gets the menu again.")
    return 0


async def cmd_stop_seeding(client: Client, args: argparse.Namespace) -> int:
    await client.call("StopSeeding", "s", [args.os])
    print(f"The server no longer seeds {args.os} in this session; machines get it from "
          "each other. A session restart seeds it again.")
    return 0


async def cmd_list_os(client: Client, args: argparse.Namespace) -> int:
    oss = await _os_records(client)
    if args.json:
        _print_json(oss)
        return 0
    if not oss:
        print("The library is empty; add an OS with 'boottorrentctl add-os NAME DIR'.")
        return 0
    rows = [("NAME", "DISPLAY NAME", "METHOD", "SIZE", "INFOHASH")]
    rows += [(o["name"], o["display_name"], o["method"], human_size(o["size_bytes"]),
              o["infohash"]) for o in oss]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for o in oss:
        if o["problem"]:
            print(o["problem"])
    return 0


async def cmd_show_os(client: Client, args: argparse.Namespace) -> int:
    (path,) = await client.call("GetOS", "s", [args.name])
    record = os_record(await client.properties(path, api.OS_IFACE))
    if args.json:
        _print_json(record)
        return 0
    print(f"{record['name']} ({record['display_name']})")
    print(f"  method:   {record['method']}")
    for key, value in sorted(record["fields"].items()):
        print(f"  {key + ':':<9} {value}")
    print(f"  size:     {human_size(record['size_bytes'])} in {record['files']} files")
    print(f"  folder:   {record['path']}{' (linked)' if record['linked'] else ''}")
    print(f"  torrent:  {record['torrent']}")
    print(f"  infohash: {record['infohash']}")
    if record["problem"]:
        print(f"  problem:  {record['problem']}")
    return 0


async def _with_progress(client: Client, coro_factory) -> Any:
    """Run a long call while drawing the daemon's OSProgress signals as a bar."""
    from .progress import ProgressBar  # rich: only for the commands that draw

    bar = ProgressBar(sys.stderr)
    await client.subscribe("OSProgress", lambda body: bar.update(*body))
    try:
        return await coro_factory()
    finally:
        bar.close()


async def cmd_add_os(client: Client, args: argparse.Namespace) -> int:
    if (args.dir is None) == (args.source is None):
        raise CtlError("give the OS's folder (add-os NAME DIR) or what to make it from "
                       "(add-os NAME --from DIR|ISO), one of the two")
    source = Path(args.dir or args.source).resolve()
    options: dict[str, Variant] = {}
    if args.link:
        options["link"] = Variant("b", True)
    if args.source is not None:
        options["from"] = Variant("b", True)
    values = {key: getattr(args, key) for key in _config_keys()
              if getattr(args, key, None) is not None}
    if values:
        if "method" not in values and args.source is None:
            raise CtlError("--dispname/--kernel/... describe a new config.yaml and need "
                           "--method too (e.g. --method kexec)")
        options["config"] = Variant("a{ss}", values)
    (path,) = await _with_progress(
        client, lambda: client.call("AddOS", "ssa{sv}", [args.name, str(source), options]))
    props = await client.properties(path, api.OS_IFACE)
    print(f"Added {props['Name']} ({props['DisplayName']}): {human_size(props['SizeBytes'])}, "
          f"infohash {props['InfoHash']}, torrent {props['TorrentPath']}")
    return 0


async def cmd_build_client(client: Client, args: argparse.Namespace) -> int:
    from .progress import ProgressBar  # rich: only for the commands that draw

    options = {"kernel_version": Variant("s", args.kernel)} if args.kernel else {}
    bar = ProgressBar(sys.stderr)
    await client.subscribe(
        "BuildProgress", lambda body: bar.update("phase-1", body[0], int(body[1] * 1000), 1000))
    try:
        (result,) = await client.call("BuildClientImage", "a{sv}", [options])
    finally:
        bar.close()
    info = unwrap(result)
    total = info["vmlinuz_bytes"] + info["initrd_bytes"]
    if args.json:
        _print_json(info | {"total_bytes": total})
        return 0
    print(f"Built the phase-1 image for kernel {info['kernel_version']}: vmlinuz "
          f"{human_size(info['vmlinuz_bytes'])} + initrd {human_size(info['initrd_bytes'])} "
          f"= {total / 1e6:.1f} MB ({info['files']} files; goal: at most 30 MB)")
    return 0


async def cmd_remove_os(client: Client, args: argparse.Namespace) -> int:
    await client.call("RemoveOS", "s", [args.name])
    print(f"Removed {args.name}.")
    return 0


async def cmd_import(client: Client, args: argparse.Namespace) -> int:
    project = Path(args.dir).resolve()
    (paths,) = await _with_progress(
        client, lambda: client.call("ImportProject", "sa{sv}", [str(project), {}]))
    names = [api.unescape_path_component(p.rsplit("/", 1)[1]) for p in paths]
    print(f"Imported {project}: configuration, and {len(names)} OS"
          + (f" ({', '.join(names)})" if names else ""))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    project = Path(args.dir)
    config = project / "Boottorrent.yaml"
    if config.exists():
        raise CtlError(f"{config} already exists: {project} is a project already; "
                       "edit it, or choose another folder")
    (project / "oss").mkdir(parents=True, exist_ok=True)
    config.write_text(_default_config_text())
    print(f"Created {config} and {project / 'oss'}/. Edit Boottorrent.yaml for your network, "
          "put each OS in oss/<name>/ with a config.yaml, then run "
          f"'boottorrentctl import {project}'.")
    return 0


def _default_config_text() -> str:
    """The daemon's commented default configuration, from the daemon's own code.

    Generated from its configuration schema, which this thin client must not import;
    running it in a child keeps `init` working with no daemon running.
    """
    try:
        done = subprocess.run([sys.executable, "-m", "boottorrentd.config"],
                              capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        raise CtlError(f"cannot print the default configuration with "
                       f"'{sys.executable} -m boottorrentd.config': {e.stderr.strip()}; "
                       "is the boottorrent package installed completely?") from e
    return done.stdout


def _method_keys(method: str) -> dict[str, api.KeyDoc]:
    return {key.name: key for key in api.OS_METHOD_KEYS[method]}


def _config_keys() -> list[str]:
    """Every config.yaml key, each once: the common ones, then each method's own."""
    keys = [key.name for key in api.OS_COMMON_KEYS]
    for m in api.METHODS:
        keys += [k for k in _method_keys(m) if k not in keys]
    return keys


def _add_os_arguments(s: argparse.ArgumentParser) -> None:
    """add-os: the folder, and one option per config.yaml key of any method (api's table)."""
    s.add_argument("name", help="library name: a-z, 0-9, '.', '_', '-' (e.g. debian12)")
    s.add_argument("dir", nargs="?", help="folder with the OS's files")
    s.add_argument("--from", dest="source", metavar="DIR|ISO",
                   help="make a live OS from a Debian live-build tree or ISO, or from an "
                   "installed root (mmdebstrap, debootstrap), instead of adding DIR; the "
                   "options below add to what is recognised (e.g. --cmdline)")
    s.add_argument("--link", action="store_true",
                   help="use the folder in place instead of copying it into the library")
    s.add_argument("--dispname", help="menu label (default: NAME)")
    s.add_argument("--method", choices=api.METHODS, help="how the client starts the OS")
    seen = {key.name for key in api.OS_COMMON_KEYS}
    for m in api.METHODS:
        for key, doc in _method_keys(m).items():
            if key not in seen:
                seen.add(key)
                s.add_argument(f"--{key}", help=f"{doc.doc} (method {m})")


def _add_library_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """The commands that read or change the OS library."""
    s = sub.add_parser("list-os", help="list the OSes in the library")
    s.add_argument("--json", action="store_true", help="print a JSON list")

    s = sub.add_parser("show-os", help="show one OS")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="print JSON")

    _add_os_arguments(sub.add_parser(
        "add-os", help="add an OS folder to the library (copies it, hashes it, makes its torrent)",
        description="Add the OS in folder DIR to the library as NAME. The folder holds the OS's "
        "files and a config.yaml saying how to boot it; when it has none, describe it with "
        "--method and that method's options and one is written. With --from, the daemon "
        "makes the folder: the kernel, initrd and squashfs of a live-build tree or ISO, or "
        "of an installed root (made into a squashfs), booted live with their own kernel.",
        epilog="Methods and their keys: " + "; ".join(
            f"{m}: {', '.join(_method_keys(m)) or '-'}" for m in api.METHODS),
    ))

    s = sub.add_parser("remove-os", help="remove an OS and its torrent from the library")
    s.add_argument("name")

    s = sub.add_parser("init", help="create a seed-style project folder (Boottorrent.yaml, oss/)")
    s.add_argument("dir")

    s = sub.add_parser("import", help="load a project folder's config and OSes into the daemon")
    s.add_argument("dir")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="boottorrentctl",
        description="Control boottorrentd, the BootTorrent daemon, over D-Bus: manage the "
        "library of operating systems that lab machines boot over BitTorrent.",
        epilog="Changing commands need root (or the polkit action org.boottorrent1.manage). "
        "Exit status: 0 success, 1 failure (the reason is printed), 2 usage error.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("status", help="show the daemon's state, its children and its clients")
    s.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("start", help="start the boot session: boot address, DHCP/TFTP, HTTP, "
                   "tracker and seed on the configured interface")
    sub.add_parser("stop", help="stop the boot session and undo what it set up")
    sub.add_parser("reload", help="read the configuration file again; a running session "
                   "takes the menu, timeout and client settings at once and names what "
                   "needs a restart")

    s = sub.add_parser("clients", help="list the machines that boot (MAC, IP, OS, stage, %%)")
    s.add_argument("--json", action="store_true", help="print a JSON list")
    s.add_argument("--watch", action="store_true",
                   help="follow the machines until Ctrl-C: a summary line and the rows "
                   "that fit the terminal, failed machines first")
    s.add_argument("--interval", type=float, default=1.0,
                   help="redraw at most this often, in seconds")

    s = sub.add_parser("assign", help="make a machine boot one OS directly, without the menu")
    s.add_argument("mac", help="the machine's MAC address, e.g. 52:54:00:12:34:56")
    s.add_argument("os", help="a library OS name")

    s = sub.add_parser("unassign", help="give a machine the menu again")
    s.add_argument("mac")

    s = sub.add_parser("stop-seeding", help="stop the server's seed of one OS for the rest "
                       "of the session: machines get it from each other (the tracker and "
                       "the menu stay)")
    s.add_argument("os", help="a library OS name")

    _add_library_commands(sub)

    s = sub.add_parser("build-client", help="build the phase-1 kernel + initrd clients boot "
                       "first (from this host's Debian packages)")
    s.add_argument("--kernel", metavar="VERSION",
                   help="kernel version from /boot (default: the newest)")
    s.add_argument("--json", action="store_true", help="print JSON")

    # Listed here; main() hands `lab ...` to the lab's own parser, loaded only then.
    sub.add_parser("lab", add_help=False, help="boot QEMU machines over PXE from a private "
                   "daemon on a virtual LAN (boottorrentctl lab --help: its options)")
    return p


COMMANDS = {
    "status": cmd_status,
    "start": cmd_start,
    "stop": cmd_stop,
    "reload": cmd_reload,
    "clients": cmd_clients,
    "assign": cmd_assign,
    "unassign": cmd_unassign,
    "stop-seeding": cmd_stop_seeding,
    "list-os": cmd_list_os,
    "show-os": cmd_show_os,
    "add-os": cmd_add_os,
    "remove-os": cmd_remove_os,
    "build-client": cmd_build_client,
    "import": cmd_import,
}


async def _run(args: argparse.Namespace) -> int:
    client = await Client.connect()
    try:
        return await COMMANDS[args.command](client, args)
    finally:
        client.bus.disconnect()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lab"]:
        from boottorrentlab.lab.cli import main as lab_main

        return lab_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":
            return cmd_init(args)
        return asyncio.run(_run(args))
    except CtlError as e:
        print(f"boottorrentctl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
