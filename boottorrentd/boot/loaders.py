"""The first loaders a machine's firmware fetches, and where Debian keeps them.

BIOS PXE gets iPXE (undionly.kpxe). UEFI x86-64 gets, by `boot.uefi_loader`, either
Debian's signed chain — shim, which loads GRUB from the same folder, which reads
grub/grub.cfg from the server — or iPXE (snponly.efi). The server cannot tell from DHCP
whether a machine enforces Secure Boot, so the signed chain is the default: it boots with
Secure Boot on or off. UEFI HTTP Boot gets the same chain over HTTP when the installed
GRUB can boot that way (Debian 13's can, 12's cannot), else iPXE. dnsmasq serves these
files over TFTP, the boot HTTP server those of UEFI HTTP Boot; both take the names from
here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

IPXE_DIR = Path("/usr/lib/ipxe")
BIOS_LOADER = "undionly.kpxe"
# snponly.efi drives the NIC through the firmware's own UEFI driver, which is what the
# firmware just PXE-booted with; ipxe.efi brings iPXE's own drivers: a fallback only.
EFI_IPXE = ("snponly.efi", "ipxe.efi")

# shim-signed and grub-efi-amd64-signed: signed by Microsoft's UEFI CA (shim) and by
# Debian's key that shim trusts (GRUB). grubnetx64 is GRUB's network image: its
# modules (efinet, tftp, http, linux) are built in, none is loaded from the server.
SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
# The names shim and GRUB look for: shim loads grubx64.efi from its own folder.
SHIM_NAME = "shimx64.efi"
GRUB_NAME = "grubx64.efi"
# GRUB's network image reads its config from <prefix>/grub.cfg, its prefix being
# "grub" under the folder it was loaded from.
GRUB_CONFIG = "grub/grub.cfg"
# GRUB's UEFI HTTP driver names itself so in its requests. Only a GRUB with it, started by
# UEFI HTTP Boot, sets its network up from the firmware's and reads its config (prefix
# "(http,<server>:<port>)/grub") and phase-1 over HTTP; Debian 12's GRUB 2.06 lacks it and
# stops at its prompt. The image is signed: what it can do is fixed, so it is read once.
GRUB_HTTP_BOOT_MARK = b"UefiHttpBoot/1.0"
# Where GRUB finds the phase-1 image in the TFTP root (a folder of links to its files and
# to QEMU's initramfs).
PHASE1_FOLDER = "phase1"


@dataclass(frozen=True)
class Loaders:
    """What is served: `files` maps the served name to its source; `bios` and `uefi` are
    the names DHCP hands to BIOS and to UEFI x86-64 machines."""

    files: dict[str, Path]
    bios: str
    uefi: str
    # UEFI HTTP Boot: the URL's file name (under /uefi/) and what is served there, the
    # first loader and the loader it fetches from the same folder.
    http_boot: str
    http_files: dict[str, Path]

    def missing(self) -> str | None:
        """Why some loader cannot be served (what to install), or None."""
        absent = {name: src for name, src in self.files.items() if not src.exists()}
        if not absent:
            return None
        grub = absent.get(GRUB_NAME)
        if grub is not None and grub != GRUB and SHIM_NAME not in absent:
            return (f"the GRUB image {grub} that boot.grub_image names is missing; put the "
                    "signed GRUB network image there, or set boot.grub_image: null to serve "
                    "Debian's")
        names = ", ".join(str(src) for src in absent.values())
        if SHIM_NAME in absent or GRUB_NAME in absent:
            return (f"the UEFI loader {names} is missing; install it with 'apt install "
                    "shim-signed grub-efi-amd64-signed', or set boot.uefi_loader: ipxe "
                    "(UEFI machines with Secure Boot on then cannot boot)")
        return f"the iPXE loader {names} is missing; install it with 'apt install ipxe'"


def grub_http_boot(grub: Path) -> bool:
    """Whether the GRUB image `grub` boots by UEFI HTTP Boot (has GRUB's UEFI HTTP driver).
    Reads the image (a few MB) the first time per version of the file."""
    try:
        st = grub.stat()
    except OSError:
        return False
    return _has_http_driver(grub, st.st_mtime_ns, st.st_size)


@functools.cache
def _has_http_driver(grub: Path, mtime_ns: int, size: int) -> bool:
    try:
        return GRUB_HTTP_BOOT_MARK in grub.read_bytes()
    except OSError:
        return False


def loaders(uefi_loader: str, *, ipxe_dir: Path = IPXE_DIR, shim: Path = SHIM,
            grub: Path | str | None = None) -> Loaders:
    """The loaders served for `uefi_loader` ("shim" or "ipxe"), with the GRUB image `grub`
    (boot.grub_image; None: Debian's). Reads the GRUB image once (grub_http_boot): call it
    off the event loop."""
    grub = GRUB if grub is None else Path(grub)
    files = {BIOS_LOADER: ipxe_dir / BIOS_LOADER}
    efi = next((name for name in EFI_IPXE if (ipxe_dir / name).exists()), EFI_IPXE[0])
    ipxe = {efi: ipxe_dir / efi}
    if uefi_loader == "shim":
        signed = {SHIM_NAME: shim, GRUB_NAME: grub}
        files |= signed
        if grub_http_boot(grub):
            return Loaders(files, BIOS_LOADER, SHIM_NAME, SHIM_NAME, signed)
        # A GRUB without HTTP boot would stop at its prompt: iPXE, which cannot boot
        # with Secure Boot on, is the only loader that gets further.
        return Loaders(files, BIOS_LOADER, SHIM_NAME, efi, ipxe)
    if uefi_loader != "ipxe":
        raise ValueError(f"boot.uefi_loader is {uefi_loader!r}; expected shim or ipxe")
    files |= ipxe
    return Loaders(files, BIOS_LOADER, efi, efi, ipxe)
