"""The first loaders by firmware: which files are served under which names."""

from pathlib import Path

import pytest

from boottorrentd.boot.loaders import GRUB, grub_http_boot, loaders


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
    assert served.missing() is None


def test_http_boot_gets_shim_and_grub_when_grub_boots_by_http(tmp_path: Path):
    shim, grub = fake_ipxe(tmp_path, "shim") / "shim", tmp_path / "grub"
    # GRUB's UEFI HTTP driver (Debian 13's GRUB) names itself in the image.
    grub.write_bytes(b"MZ...User-Agent: UefiHttpBoot/1.0...")
    served = loaders("shim", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi"),
                     shim=shim, grub=grub)

    assert served.http_boot == "shimx64.efi"
    assert served.http_files == {"shimx64.efi": shim, "grubx64.efi": grub}


def test_http_boot_gets_ipxe_when_grub_cannot_boot_by_http(tmp_path: Path):
    # Debian 12's GRUB: started by HTTP Boot it reads nothing and stops at its prompt.
    shim, grub = fake_ipxe(tmp_path, "shim", "grub") / "shim", tmp_path / "grub"
    served = loaders("shim", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi"),
                     shim=shim, grub=grub)

    assert served.uefi == "shimx64.efi"
    assert served.http_boot == "snponly.efi"
    assert served.http_files == {"snponly.efi": tmp_path / "snponly.efi"}


def test_grub_replaced_by_one_that_boots_by_http_is_seen(tmp_path: Path):
    grub = tmp_path / "grub"
    grub.write_bytes(b"GRUB 2.06")
    assert not grub_http_boot(grub)
    grub.write_bytes(b"GRUB 2.12 UefiHttpBoot/1.0 and more")
    assert grub_http_boot(grub)
    assert not grub_http_boot(tmp_path / "absent")


def test_ipxe_for_uefi_falls_back_to_ipxe_efi(tmp_path: Path):
    served = loaders("ipxe", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "ipxe.efi"))

    assert served.uefi == served.http_boot == "ipxe.efi"
    assert served.http_files == {"ipxe.efi": tmp_path / "ipxe.efi"}
    assert set(served.files) == {"undionly.kpxe", "ipxe.efi"}


def test_a_missing_signed_loader_names_the_packages_and_the_way_around(tmp_path: Path):
    served = loaders("shim", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi"),
                     shim=tmp_path / "no-shim", grub=tmp_path / "no-grub")

    why = served.missing()
    assert why is not None
    assert "apt install shim-signed grub-efi-amd64-signed" in why
    assert "boot.uefi_loader: ipxe" in why


def test_a_missing_grub_image_named_by_the_config_names_the_key_not_the_packages(
        tmp_path: Path):
    shim = fake_ipxe(tmp_path, "shim") / "shim"
    served = loaders("shim", ipxe_dir=fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi"),
                     shim=shim, grub=str(tmp_path / "trixie-grubnetx64.efi.signed"))

    why = served.missing()
    assert why is not None
    assert f"{tmp_path / 'trixie-grubnetx64.efi.signed'} that boot.grub_image names" in why
    assert "boot.grub_image: null" in why
    assert "apt install" not in why


def test_an_unknown_uefi_loader_is_refused():
    with pytest.raises(ValueError, match="shim or ipxe"):
        loaders("grub")


def test_the_grub_image_is_debians_unless_the_config_names_one(tmp_path: Path):
    ipxe = fake_ipxe(tmp_path, "undionly.kpxe", "snponly.efi")
    assert loaders("shim", ipxe_dir=ipxe).files["grubx64.efi"] == GRUB
    named = loaders("shim", ipxe_dir=ipxe, grub=str(tmp_path / "grubnetx64.efi.signed"))
    assert named.files["grubx64.efi"] == tmp_path / "grubnetx64.efi.signed"
