"""The first loaders by firmware: which files are served under which names."""

from pathlib import Path

import pytest

from boottorrentd.boot.loaders import loaders


def fake_ipxe(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_uefi_machines_get_shim_with_grub_beside_it_by_default(tmp_path: Path):
    shim, grub = fake_ipxe(tmp_path, "shim", "grub") / "shim", tmp_path / "grub"
    served = loaders("shim", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi"),
                     shim=shim, grub=grub)

    assert served.uefi == "shimx64.efi" and served.bios == "undionly.kpxe"
    assert served.files == {"undionly.kpxe": tmp_path / "undionly.kpxe",
                            "shimx64.efi": shim, "grubx64.efi": grub}
    # HTTP Boot gets iPXE: Debian 12's GRUB could read nothing more over HTTP.
    assert served.http_boot == "snponly.efi"
    assert served.missing() is None


def test_ipxe_for_uefi_falls_back_to_ipxe_efi(tmp_path: Path):
    served = loaders("ipxe", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "ipxe.efi"))

    assert served.uefi == served.http_boot == "ipxe.efi"
    assert set(served.files) == {"undionly.kpxe", "ipxe.efi"}


def test_a_missing_signed_loader_names_the_packages_and_the_way_around(tmp_path: Path):
    served = loaders("shim", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi"),
                     shim=tmp_path / "no-shim", grub=tmp_path / "no-grub")

    why = served.missing()
    assert why is not None
    assert "apt install shim-signed grub-efi-amd64-signed" in why
    assert "boot.uefi_loader: ipxe" in why


def test_an_unknown_uefi_loader_is_refused():
    with pytest.raises(ValueError, match="shim or ipxe"):
        loaders("grub")
