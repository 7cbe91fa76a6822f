"""The first loaders a machine's firmware fetches, and where Debian keeps them.

BIOS PXE gets iPXE (undionly.kpxe). UEFI x86-64 gets, by `boot.uefi_loader`, either
Debian's signed chain — shim, which loads GRUB from the same folder, which reads
grub/grub.cfg from the server — or iPXE (snponly.efi). The server cannot tell from DHCP
whether a machine enforces Secure Boot, so the signed chain is the default: it boots with
Secure Boot on or off. dnsmasq serves these files over TFTP, the boot HTTP server iPXE
to UEFI HTTP Boot; both take the names from here.
"""

from __future__ import annotations

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
    # UEFI HTTP Boot: Debian 12's GRUB network image has no HTTP, so GRUB booted over
    # HTTP could read nothing; those machines get iPXE, whatever boot.uefi_loader says.
    http_boot: str
    http_boot_file: Path

    def missing(self) -> str | None:
        """Why some loader cannot be served (what to install), or None."""
        absent = {name: src for name, src in self.files.items() if not src.exists()}
        if not absent:
            return None
        names = ", ".join(str(src) for src in absent.values())
        if SHIM_NAME in absent or GRUB_NAME in absent:
            return (f"the UEFI loader {names} is missing; install it with 'apt install "
                    "shim-signed grub-efi-amd64-signed', or set boot.uefi_loader: ipxe "
                    "(UEFI machines with Secure Boot on then cannot boot)")
        return f"the iPXE loader {names} is missing; install it with 'apt install ipxe'"


def loaders(uefi_loader: str, *, ipxe_dir: Path = IPXE_DIR, shim: Path = SHIM,
            grub: Path = GRUB) -> Loaders:
    """The loaders served for `uefi_loader` ("shim" or "ipxe")."""
    files = {BIOS_LOADER: ipxe_dir / BIOS_LOADER}
    efi = next((name for name in EFI_IPXE if (ipxe_dir / name).exists()), EFI_IPXE[0])
    if uefi_loader == "shim":
        files |= {SHIM_NAME: shim, GRUB_NAME: grub}
        return Loaders(files, BIOS_LOADER, SHIM_NAME, efi, ipxe_dir / efi)
    if uefi_loader != "ipxe":
        raise ValueError(f"boot.uefi_loader is {uefi_loader!r}; expected shim or ipxe")
    files[efi] = ipxe_dir / efi
    return Loaders(files, BIOS_LOADER, efi, efi, ipxe_dir / efi)
