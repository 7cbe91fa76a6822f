"""The boot HTTP server on a real socket, serving a real library."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from boottorrentd.boot.grub import grub_config
from boottorrentd.boot.http import BootServer
from boottorrentd.boot.loaders import loaders
from boottorrentd.clients.registry import Registry
from boottorrentd.config import BootSection, ClientSection, Config, LoaderSection
from boottorrentd.library.store import Library, OSEntry
from boottorrentd.phase1.qemu import QEMU_NOT_BUILT, qemu_image

pytestmark = pytest.mark.integration

MAC = "52:54:00:12:34:56"
KERNEL = bytes(range(256)) * 40
INITRD = b"initrd" * 5000
OS_CONFIG = "method: kexec\nkernel: vmlinuz\ninitrd: initrd.img\n"


@dataclass
class Env:
    server: BootServer
    http: aiohttp.ClientSession
    library: Library
    registry: Registry
    phase1: Path
    tmp: Path
    torrent_calls: list[str]
    downloads_started: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def url(self, path: str) -> URL:
        # encoded=True: the path goes out exactly as written, %2F and all.
        return URL(self.base + path, encoded=True)

    async def get(self, path: str, **kw: object) -> tuple[int, bytes, aiohttp.ClientResponse]:
        async with self.http.get(self.url(path), **kw) as resp:
            return resp.status, await resp.read(), resp

    async def post(self, path: str, **kw: object) -> tuple[int, object]:
        async with self.http.post(self.url(path), **kw) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, json.loads(body)
            return resp.status, body.decode()


@asynccontextmanager
async def boot_server(tmp: Path, cfg: Config | None = None) -> AsyncIterator[Env]:
    library = Library(tmp / "state")
    library.load()
    source = tmp / "source"
    source.mkdir()
    (source / "vmlinuz").write_bytes(KERNEL)
    (source / "initrd.img").write_bytes(INITRD)
    (source / "config.yaml").write_text("dispname: Debian 12\n" + OS_CONFIG)
    await library.add("debian12", source)
    other = tmp / "other"
    other.mkdir()
    (other / "vmlinuz").write_bytes(b"k")
    (other / "initrd.img").write_bytes(b"i")
    (other / "config.yaml").write_text("dispname: FreeDOS\n" + OS_CONFIG)
    await library.add("freedos", other)

    registry = Registry(tmp / "clients.json")
    phase1 = tmp / "phase1"
    phase1.mkdir()
    calls: list[str] = []
    started: list[str] = []

    def torrent_file(entry: OSEntry) -> Path:
        calls.append(entry.name)
        return entry.torrent_path

    server = BootServer(
        host="127.0.0.1", port=0,
        cfg=cfg or Config(boottorrent=BootSection(timeout=30, default_os="freedos")),
        library=library, registry=registry, phase1_dir=phase1, torrent_file=torrent_file,
        on_torrent=lambda entry: started.append(entry.name),
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Env(server, http, library, registry, phase1, tmp, calls, started)
    finally:
        await server.stop()


def run(tmp: Path, scenario: Callable[[Env], Awaitable[None]], cfg: Config | None = None) -> None:
    async def main() -> None:
        async with boot_server(tmp, cfg) as env:
            await asyncio.wait_for(scenario(env), 10)

    asyncio.run(main())


def build_phase1(env: Env) -> None:
    (env.phase1 / "vmlinuz").write_bytes(KERNEL)
    (env.phase1 / "initrd.img").write_bytes(INITRD)


# --- iPXE scripts ----------------------------------------------------------------------------


def test_boot_ipxe_chains_to_the_machines_own_script(tmp_path):
    async def scenario(env: Env) -> None:
        status, body, resp = await env.get("/boot.ipxe")
        assert status == 200
        assert resp.content_type == "text/plain"
        text = body.decode()
        assert text.startswith("#!ipxe\n")
        assert f"chain http://192.168.1.1:{env.server.port}/boot/${{net0/mac}}.ipxe" in text

    run(tmp_path, scenario)


def test_a_machine_gets_the_menu_until_it_is_assigned_then_boots_directly(tmp_path):
    async def scenario(env: Env) -> None:
        build_phase1(env)
        status, body, _ = await env.get(f"/boot/{MAC}.ipxe")
        text = body.decode()
        assert status == 200
        assert "item debian12 Debian 12" in text
        assert "item freedos FreeDOS" in text
        assert "choose --timeout 30000 --default freedos target" in text
        assert env.registry.clients[MAC].stage == "menu"
        assert env.registry.clients[MAC].ip == "127.0.0.1"

        env.registry.assign(MAC, "debian12")
        # iPXE prints MACs with colons; other spellings work too.
        status, body, _ = await env.get("/boot/52-54-00-12-34-56.ipxe")
        text = body.decode()
        assert status == 200
        assert "choose" not in text and "item " not in text
        assert "boottorrent.os=debian12" in text
        assert f"kernel http://192.168.1.1:{env.server.port}/phase1/vmlinuz" in text

    run(tmp_path, scenario)


def test_a_replaced_config_applies_to_the_next_request(tmp_path):
    async def scenario(env: Env) -> None:
        build_phase1(env)
        env.server.cfg = Config(boottorrent=BootSection(timeout=0, default_os="debian12"),
                                client=ClientSection(extra_cmdline="console=ttyS0"))
        _, body, _ = await env.get(f"/boot/{MAC}.ipxe")
        text = body.decode()
        assert "choose" not in text
        assert "boottorrent.os=debian12 boottorrent.mac=${net0/mac} console=ttyS0" in text

    run(tmp_path, scenario)


def test_without_phase1_the_script_says_how_to_build_it(tmp_path):
    async def scenario(env: Env) -> None:
        _, body, _ = await env.get(f"/boot/{MAC}.ipxe")
        assert "boottorrentctl build-client" in body.decode()
        assert "kernel " not in body.decode()

    run(tmp_path, scenario)


def test_a_head_request_for_a_boot_script_does_not_count_as_a_boot(tmp_path):
    async def scenario(env: Env) -> None:
        async with env.http.head(env.url(f"/boot/{MAC}.ipxe")) as resp:
            assert resp.status == 200
        assert env.registry.clients == {}

    run(tmp_path, scenario)


def test_a_bad_mac_in_the_script_url_is_refused(tmp_path):
    async def scenario(env: Env) -> None:
        for path in ("/boot/nonsense.ipxe", "/boot/${net0%2Fmac}.ipxe", "/boot/..%2F..ipxe"):
            status, body, resp = await env.get(path)
            assert status in (400, 404), path
            assert resp.content_type == "text/plain"
            assert body.strip()
        assert env.registry.clients == {}

    run(tmp_path, scenario)


# --- phase-1 files ---------------------------------------------------------------------------


def test_phase1_is_404_until_built_then_served_and_marks_the_machine(tmp_path):
    async def scenario(env: Env) -> None:
        status, body, _ = await env.get("/phase1/vmlinuz")
        assert status == 404
        assert b"boottorrentctl build-client" in body

        build_phase1(env)
        # The boot script fetch tells the registry which machine is at 127.0.0.1.
        await env.get(f"/boot/{MAC}.ipxe")
        status, body, _ = await env.get("/phase1/vmlinuz")
        assert (status, body) == (200, KERNEL)
        assert env.registry.clients[MAC].stage == "phase1"

        status, body, _ = await env.get("/phase1/initrd.img")
        assert (status, body) == (200, INITRD)

    run(tmp_path, scenario)


def test_qemus_initramfs_is_404_with_how_to_build_it_until_built_then_served(tmp_path):
    async def scenario(env: Env) -> None:
        build_phase1(env)
        status, body, _ = await env.get("/phase1/qemu.img")
        assert status == 404
        assert QEMU_NOT_BUILT.encode() in body

        image = qemu_image(env.phase1.parent)
        image.parent.mkdir()
        image.write_bytes(b"qemu" * 1000)
        status, body, _ = await env.get("/phase1/qemu.img")
        assert (status, body) == (200, b"qemu" * 1000)

    run(tmp_path, scenario)


def test_phase1_fetches_may_name_the_machine(tmp_path):
    async def scenario(env: Env) -> None:
        build_phase1(env)
        status, _, _ = await env.get("/phase1/vmlinuz?mac=52-54-00-00-00-07")
        assert status == 200
        assert env.registry.clients["52:54:00:00:00:07"].stage == "phase1"

        status, body, _ = await env.get("/phase1/vmlinuz?mac=bogus")
        assert status == 400
        assert b"not a MAC address" in body

    run(tmp_path, scenario)


def test_phase1_serves_only_its_two_files(tmp_path):
    async def scenario(env: Env) -> None:
        build_phase1(env)
        (env.phase1 / "secret").write_text("TOP-SECRET-CONTENT")
        for path in ("/phase1/secret", "/phase1/..%2Fclients.json", "/phase1/%2E%2E"):
            status, body, _ = await env.get(path)
            assert status == 404, path
            assert b"TOP-SECRET-CONTENT" not in body
            assert body.strip()

    run(tmp_path, scenario)


# --- UEFI HTTP Boot ---------------------------------------------------------------------------


def test_uefi_http_boot_gets_its_loaders_also_by_shims_double_slash_url(tmp_path):
    # What this host's loaders are: shim and GRUB where GRUB boots by HTTP, else iPXE.
    served = loaders("shim")

    async def scenario(env: Env) -> None:
        for name, source in served.http_files.items():
            for path in (f"/uefi/{name}", f"/uefi//{name}"):
                status, body, resp = await env.get(path)
                assert (status, resp.content_type) == (200, "application/efi"), path
                assert body == source.read_bytes(), path
        status, body, _ = await env.get("/uefi/undionly.kpxe")
        assert status == 404
        assert f"UEFI HTTP Boot gets {served.http_boot}".encode() in body

    run(tmp_path, scenario)


def test_grub_started_by_http_boot_reads_the_same_config_as_over_tftp(tmp_path):
    async def scenario(env: Env) -> None:
        build_phase1(env)
        env.registry.assign(MAC, "debian12")
        status, body, _ = await env.get("/grub/grub.cfg")
        assert status == 200
        cfg = env.server.cfg
        oss = {name: e.spec.dispname for name, e in env.library.served.items()}
        assert body.decode() == grub_config(oss, env.registry.assignments, cfg,
                                            server=env.server.server_address,
                                            phase1_ready=True)
        # Relative paths: GRUB loads phase-1 from the server it came from, this one.
        assert "if linux /phase1/vmlinuz " in body.decode()
        assert f"= {MAC} ]" in body.decode()

    run(tmp_path, scenario)


def test_with_ipxe_for_uefi_there_is_no_grub_config(tmp_path):
    cfg = Config(boottorrent=BootSection(timeout=30, default_os="freedos"),
                 boot=LoaderSection(uefi_loader="ipxe"))

    async def scenario(env: Env) -> None:
        status, body, _ = await env.get("/grub/grub.cfg")
        assert status == 404
        assert b"boot.uefi_loader is ipxe" in body

    run(tmp_path, scenario, cfg)


# --- torrents and boot specs -----------------------------------------------------------------


def test_the_torrent_downloads_as_the_librarys_file(tmp_path):
    async def scenario(env: Env) -> None:
        entry = env.library.entries["debian12"]
        status, body, resp = await env.get("/torrents/debian12.torrent")
        assert status == 200
        assert body == entry.torrent_path.read_bytes()
        assert resp.content_type == "application/x-bittorrent"

        async with env.http.head(env.url("/torrents/debian12.torrent")) as head:
            assert head.status == 200
            assert head.content_length == len(body)

    run(tmp_path, scenario)


def test_serving_a_torrent_tells_the_session_that_machine_starts_downloading(tmp_path):
    async def scenario(env: Env) -> None:
        assert env.downloads_started == []
        status, _, _ = await env.get("/torrents/freedos.torrent")
        assert status == 200
        assert env.downloads_started == ["freedos"]
        status, _, _ = await env.get("/torrents/nosuch.torrent")
        assert status == 404
        assert env.downloads_started == ["freedos"]

    run(tmp_path, scenario)


def test_a_range_request_returns_206_and_those_bytes(tmp_path):
    async def scenario(env: Env) -> None:
        data = env.library.entries["debian12"].torrent_path.read_bytes()
        status, body, resp = await env.get("/torrents/debian12.torrent",
                                           headers={"Range": "bytes=10-29"})
        assert status == 206
        assert body == data[10:30]
        assert resp.headers["Content-Range"] == f"bytes 10-29/{len(data)}"

        build_phase1(env)
        status, body, _ = await env.get("/phase1/vmlinuz", headers={"Range": "bytes=-100"})
        assert (status, body) == (206, KERNEL[-100:])

    run(tmp_path, scenario)


def test_boot_json_describes_the_os(tmp_path):
    async def scenario(env: Env) -> None:
        entry = env.library.entries["debian12"]
        status, body, resp = await env.get("/os/debian12/boot.json")
        assert status == 200
        assert resp.content_type == "application/json"
        spec = json.loads(body)
        server = f"192.168.1.1:{env.server.port}"
        assert spec["name"] == "debian12"
        assert spec["spec"]["method"] == "kexec"
        assert spec["spec"]["kernel"] == "vmlinuz"
        assert spec["infohash"] == entry.torrent.infohash
        assert spec["torrent_url"] == f"http://{server}/torrents/debian12.torrent"
        assert spec["report_url"] == f"http://{server}/api/v1/clients/{{mac}}/events"
        assert spec["seed_time"] == 30
        assert spec["aria2"]["bt-tracker-interval"] == "15"

    run(tmp_path, scenario)


@pytest.mark.parametrize("path", [
    "/torrents/windows.torrent",
    "/torrents/..%2Fclients.json%00.torrent",
    "/torrents/..%2F..%2Fsecret.torrent",
    "/torrents/%2E%2E.torrent",
    "/torrents/Debian12.torrent",
    "/os/..%2F..%2Fsecret/boot.json",
    "/os/..%2Fstate/boot.json",
    "/os/windows/boot.json",
    "/torrents/../secret.torrent",
])
def test_names_outside_the_library_are_404_without_touching_the_filesystem(tmp_path, path):
    async def scenario(env: Env) -> None:
        (env.tmp / "secret.torrent").write_text("TOP-SECRET-CONTENT")
        (env.tmp / "secret").mkdir()
        status, body, resp = await env.get(path)
        assert status in (400, 404)
        assert b"TOP-SECRET-CONTENT" not in body
        assert resp.content_type == "text/plain"
        assert env.torrent_calls == []

    run(tmp_path, scenario)


def test_a_missing_torrent_file_is_a_404_with_a_reason(tmp_path):
    async def scenario(env: Env) -> None:
        env.library.entries["debian12"].torrent_path.unlink()
        status, body, _ = await env.get("/torrents/debian12.torrent")
        assert status == 404
        assert b"re-add the OS" in body

    run(tmp_path, scenario)


# --- progress reports ------------------------------------------------------------------------

EVENTS = f"/api/v1/clients/{MAC}/events"


def test_a_good_report_updates_the_client(tmp_path):
    async def scenario(env: Env) -> None:
        status, body = await env.post(EVENTS, json={
            "stage": "downloading", "progress": 0.5, "os": "debian12",
            "downloaded_bytes": 123, "peers": 4,
        })
        assert status == 200
        assert isinstance(body, dict)
        assert body["stage"] == "downloading"
        client = env.registry.clients[MAC]
        assert (client.stage, client.progress, client.os, client.downloaded_bytes,
                client.peers, client.ip) == ("downloading", 0.5, "debian12", 123, 4,
                                             "127.0.0.1")

    run(tmp_path, scenario)


async def _chunks(size: int) -> AsyncIterator[bytes]:
    yield b'{"error": "'
    for _ in range(size // 1024):
        yield b"x" * 1024
    yield b'"}'


BAD_REPORTS: list[tuple[str, str, dict, int, str]] = [
    ("bad JSON", EVENTS, {"data": b'{"stage": ', "headers": {"Content-Type":
                                                            "application/json"}},
     400, "not valid JSON"),
    ("NaN", EVENTS, {"data": b'{"progress": NaN}', "headers": {"Content-Type":
                                                              "application/json"}},
     400, "not valid JSON"),
    ("not UTF-8", EVENTS, {"data": b'{"error": "\xff"}', "headers": {"Content-Type":
                                                                    "application/json"}},
     400, "not valid JSON"),
    ("too big", EVENTS, {"json": {"error": "x" * 17000}}, 413, "at most 16384 bytes"),
    ("too big, chunked", EVENTS, {"data": None, "headers": {"Content-Type":
                                                           "application/json"}},
     413, "at most 16384 bytes"),
    ("wrong type", EVENTS, {"json": {"progress": "half"}}, 422, "progress"),
    ("not an object", EVENTS, {"json": ["downloading"]}, 422, "object"),
    ("unknown stage", EVENTS, {"json": {"stage": "exploded"}}, 422, "stage"),
    ("unknown key", EVENTS, {"json": {"stage": "downloading", "extra": 1}}, 422, "extra"),
    ("failed without error", EVENTS, {"json": {"stage": "failed"}}, 422, "error"),
    ("wrong content type", EVENTS, {"data": b'{"stage": "downloading"}',
                                    "headers": {"Content-Type": "text/plain"}},
     415, "application/json"),
    ("no content type", EVENTS, {"data": b'{"stage": "downloading"}'}, 415,
     "application/json"),
    ("bad MAC", "/api/v1/clients/nonsense/events", {"json": {"stage": "downloading"}},
     400, "not a MAC address"),
]


@pytest.mark.parametrize(("path", "kw", "status", "reason"),
                         [case[1:] for case in BAD_REPORTS],
                         ids=[case[0] for case in BAD_REPORTS])
def test_a_malformed_report_is_refused_with_a_reason_and_changes_nothing(
    tmp_path, path, kw, status, reason
):
    async def scenario(env: Env) -> None:
        await env.post(EVENTS, json={"stage": "downloading", "progress": 0.25})
        before = env.registry.clients[MAC].to_dict()
        kwargs = dict(kw)
        if "data" in kwargs and kwargs["data"] is None:
            kwargs["data"] = _chunks(20 * 1024)
        got_status, body = await env.post(path, **kwargs)
        assert got_status == status
        assert isinstance(body, dict) and reason in body["error"]
        assert env.registry.clients[MAC].to_dict() == before
        assert set(env.registry.clients) == {MAC}

    run(tmp_path, scenario)


def test_a_report_of_exactly_16_kib_is_accepted(tmp_path):
    async def scenario(env: Env) -> None:
        skeleton = json.dumps({"stage": "downloading", "error": ""}).encode()
        body = json.dumps({"stage": "downloading",
                           "error": " " * (16384 - len(skeleton))}).encode()
        assert len(body) == 16384
        # 16 KiB of spaces collapse to nothing; over 500 characters it is still refused.
        status, got = await env.post(EVENTS, data=body,
                                     headers={"Content-Type": "application/json"})
        assert status == 422 and "longer than 500" in got["error"]  # type: ignore[index]

    run(tmp_path, scenario)


def test_only_get_and_post_where_meant(tmp_path):
    async def scenario(env: Env) -> None:
        status, _ = await env.post("/boot.ipxe")
        assert status == 405
        status, _, _ = await env.get(EVENTS)
        assert status == 405

    run(tmp_path, scenario)


# --- lifecycle -------------------------------------------------------------------------------


def test_stop_closes_the_listening_socket(tmp_path):
    async def main() -> int:
        async with boot_server(tmp_path) as env:
            status, _, _ = await env.get("/boot.ipxe")
            assert status == 200
            return env.server.port

    port = asyncio.run(main())
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_a_taken_port_fails_start_and_leaves_nothing_running(tmp_path):
    async def main() -> None:
        async with boot_server(tmp_path) as env:
            second = BootServer(host="127.0.0.1", port=env.server.port, cfg=env.server.cfg,
                                library=env.library, registry=env.registry,
                                phase1_dir=env.phase1)
            with pytest.raises(OSError):
                await second.start()
            await second.stop()

    asyncio.run(main())
