"""What the daemon and its clients share: D-Bus names and paths, and the keys of an OS.

An OS's config.yaml keys are part of the API: AddOS takes them in its "config" option, and
boottorrentctl offers them as add-os options. The tables here are their one source;
`boottorrentd.library.osspec` validates with them.
"""

from dataclasses import dataclass

BUS_NAME = "org.boottorrent1"
MANAGER_PATH = "/org/boottorrent1"
MANAGER_IFACE = "org.boottorrent1.Manager"
OS_IFACE = "org.boottorrent1.OS"
OS_PATH_PREFIX = "/org/boottorrent1/os/"
CLIENT_IFACE = "org.boottorrent1.Client"
CLIENT_PATH_PREFIX = "/org/boottorrent1/client/"
POLKIT_ACTION_MANAGE = "org.boottorrent1.manage"

ERROR_PREFIX = "org.boottorrent1.Error."
ERROR_INVALID_ARGUMENT = ERROR_PREFIX + "InvalidArgument"
ERROR_NOT_FOUND = ERROR_PREFIX + "NotFound"
ERROR_EXISTS = ERROR_PREFIX + "Exists"
ERROR_BUSY = ERROR_PREFIX + "Busy"
ERROR_FAILED = ERROR_PREFIX + "Failed"
ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


def escape_path_component(name: str) -> str:
    """Make `name` a valid object-path element, reversibly (as sd_bus_path_encode does).

    Library names may hold '.' and '-', which object paths do not allow.
    """
    if not name:
        return "_"
    out = []
    for ch in name:
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"_{ord(ch):02x}")
    return "".join(out)


def unescape_path_component(element: str) -> str:
    if element == "_":
        return ""
    out, i = [], 0
    while i < len(element):
        if element[i] == "_":
            out.append(chr(int(element[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(element[i])
            i += 1
    return "".join(out)


def os_path(name: str) -> str:
    return OS_PATH_PREFIX + escape_path_component(name)


def client_path(mac: str) -> str:
    return CLIENT_PATH_PREFIX + mac.replace(":", "").lower()


# --- An OS's config.yaml keys ---------------------------------------------------------------

METHODS = ("kexec", "bin", "bin-qemu-x86_64", "qemu", "live", "image")

# What a key's value must be; boottorrentd.library.osspec checks it.
TEXT = "text"  # any one-line string
LABEL = "label"  # a non-empty one-line string
FILE = "file"  # a regular file inside the OS folder
CHOICE = "choice"  # one of KeyDoc.choices
DISK = "disk"  # largest, first or a path under /dev/
DISK_RULES = ("largest", "first")
ABSPATH = "abspath"  # an absolute path inside the OS's own root filesystem


@dataclass(frozen=True)
class KeyDoc:
    """One key of config.yaml, for validation, help and man pages."""

    name: str
    doc: str
    required: bool = False
    default: str | None = None
    kind: str = TEXT
    choices: tuple[str, ...] = ()
    example: str = ""


OS_COMMON_KEYS = (
    KeyDoc(
        "dispname",
        "The OS's name in the client menu; unique in the library.",
        kind=LABEL,
        example="Debian 12",
    ),
    KeyDoc(
        "method",
        "How the client starts the OS.",
        required=True,
        kind=CHOICE,
        choices=METHODS,
        example="kexec",
    ),
)

_QEMU_KEYS = (
    KeyDoc(
        "args",
        "Arguments to qemu-system-x86_64; files they name are relative to the OS folder, "
        "e.g. -fda disk.img or -cdrom disc.iso. The client runs the VM with KVM where it "
        "has it (else TCG) and its serial console on the client's (-nographic) unless the "
        "arguments ask for a display (e.g. -vnc :0), and seeds the OS while the VM runs.",
        default="",
        example="-cdrom disc.iso",
    ),
)

OS_METHOD_KEYS: dict[str, tuple[KeyDoc, ...]] = {
    "kexec": (
        KeyDoc(
            "kernel",
            "The Linux kernel to kexec: a file in the OS folder.",
            required=True,
            kind=FILE,
            example="vmlinuz",
        ),
        KeyDoc(
            "initrd",
            "Its initramfs: a file in the OS folder.",
            required=True,
            kind=FILE,
            example="initrd.img",
        ),
        KeyDoc("cmdline", "The kernel's command line.", default="", example="quiet"),
    ),
    "bin": (
        KeyDoc(
            "bin",
            "The program the client runs: a file in the OS folder.",
            required=True,
            kind=FILE,
            example="hello",
        ),
        KeyDoc("binargs", "Its arguments.", default="", example="--verbose"),
    ),
    "bin-qemu-x86_64": _QEMU_KEYS,
    "qemu": _QEMU_KEYS,
    "live": (
        KeyDoc(
            "squashfs",
            "The root filesystem, a squashfs image in the OS folder; the client mounts it "
            "read-only with a tmpfs overlay in RAM, so it needs no disk.",
            required=True,
            kind=FILE,
            example="root.squashfs",
        ),
        KeyDoc(
            "init",
            "The program started inside that root filesystem.",
            default="/sbin/init",
            kind=ABSPATH,
            example="/sbin/init",
        ),
        KeyDoc(
            "kernel",
            "The OS's own Linux kernel, a file in the OS folder: the client kexecs it with "
            "initrd, which then mounts the squashfs (a real distribution, whose modules "
            "match its kernel). Empty: the squashfs runs on the client's phase-1 kernel "
            "(a small root with no modules of its own).",
            default="",
            kind=FILE,
            example="vmlinuz",
        ),
        KeyDoc(
            "initrd",
            "The kernel's initramfs (initramfs-tools, as Debian's kernels and live-build "
            "make it), a file in the OS folder; needed with kernel.",
            default="",
            kind=FILE,
            example="initrd.img",
        ),
        KeyDoc(
            "cmdline",
            "The OS kernel's command line (with kernel); the client adds boot=boottorrent "
            "at its end.",
            default="",
            example="console=ttyS0 quiet",
        ),
    ),
    "image": (
        KeyDoc(
            "image",
            "A disk image in the OS folder, written over the client's whole disk: raw, or "
            "raw compressed with zstd or xz (by its name ending in .zst or .xz). A raw image "
            "is downloaded straight onto the disk, so it may be larger than the client's "
            "memory; a compressed one is downloaded into memory and decompressed onto the "
            "disk.",
            required=True,
            kind=FILE,
            example="disk.img",
        ),
        KeyDoc(
            "target",
            "The client's disk the image is written to; everything on it is lost. largest: "
            "the largest disk; first: the first disk by kernel name (nvme0n1 before sda "
            "before vda); or a device such as /dev/sda. CD drives, floppies, loop and RAM "
            "disks never count. The server must allow it: client.allow_disk_writes.",
            default="largest",
            kind=DISK,
            example="/dev/sda",
        ),
        KeyDoc(
            "after",
            "What the client does once the image is written, verified and seeded: reboot "
            "(the server then tells it to boot from its disk) or poweroff.",
            default="reboot",
            kind=CHOICE,
            choices=("reboot", "poweroff"),
            example="poweroff",
        ),
    ),
}
