"""OS folder configs: the seed's files load unchanged, every method validates its keys."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from boottorrentd.config import load_yaml
from boottorrentd.errors import ConfigError
from boottorrentd.library.osspec import (
    COMMON_KEYS,
    METHODS,
    KeyDoc,
    OSSpec,
    load_os_config,
    method_keys,
    parse_os_config,
    render_os_config,
)

OSS = Path(__file__).resolve().parents[2] / "tests/data/seed/envtest/oss"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An OS folder holding one file of every kind the methods name."""
    for name in ("vmlinuz", "initrd.img", "hello", "root.squashfs", "disk.img"):
        (tmp_path / name).write_bytes(b"payload")
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz").write_bytes(b"payload")
    return tmp_path


def parse(text: str, folder: Path, default_dispname: str | None = None) -> OSSpec:
    return parse_os_config(load_yaml(text, "config.yaml"), folder, "config.yaml", default_dispname)


def test_the_seeds_kexec_os_loads_unchanged():
    spec = load_os_config(OSS / "testos")

    assert spec == OSSpec(
        dispname="TestOS",
        method="kexec",
        fields={
            "kernel": "vmlinuz-linux-lts",
            "initrd": "initramfs-linux-lts.img",
            "cmdline": "break",
        },
    )
    assert spec.files == {"kernel": "vmlinuz-linux-lts", "initrd": "initramfs-linux-lts.img"}


def test_the_seeds_qemu_os_loads_unchanged():
    spec = load_os_config(OSS / "freedos")

    assert spec == OSSpec("FreeDOS", "bin-qemu-x86_64", {"args": "-fda odin1440.img"})


def test_the_seeds_bin_os_loads_unchanged_with_its_empty_binargs():
    spec = load_os_config(OSS / "testbin")

    assert spec == OSSpec("Test Binary", "bin", {"bin": "hello", "binargs": ""})


def test_the_boot_spec_is_json_with_method_dispname_and_the_methods_keys():
    spec = load_os_config(OSS / "testos")

    assert json.loads(json.dumps(spec.boot_spec())) == {
        "method": "kexec",
        "dispname": "TestOS",
        "kernel": "vmlinuz-linux-lts",
        "initrd": "initramfs-linux-lts.img",
        "cmdline": "break",
    }


VALID = [
    (
        "kexec",
        "method: kexec\nkernel: vmlinuz\ninitrd: initrd.img\n",
        {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": ""},
    ),
    (
        "kexec-in-subfolder",
        "method: kexec\nkernel: ./boot/vmlinuz\ninitrd: initrd.img\n",
        {"kernel": "boot/vmlinuz", "initrd": "initrd.img", "cmdline": ""},
    ),
    ("bin", "method: bin\nbin: hello\nbinargs: --loud\n", {"bin": "hello", "binargs": "--loud"}),
    ("bin-number-args", "method: bin\nbin: hello\nbinargs: 5\n", {"bin": "hello", "binargs": "5"}),
    ("bin-qemu-x86_64", "method: bin-qemu-x86_64\n", {"args": ""}),
    ("qemu", "method: qemu\nargs: -cdrom disc.iso -m 512\n", {"args": "-cdrom disc.iso -m 512"}),
    (
        "live",
        "method: live\nsquashfs: root.squashfs\n",
        {"squashfs": "root.squashfs", "init": "/sbin/init", "kernel": "", "initrd": "",
         "cmdline": ""},
    ),
    (
        "live-own-init",
        "method: live\nsquashfs: root.squashfs\ninit: /lib/systemd/systemd\n",
        {"squashfs": "root.squashfs", "init": "/lib/systemd/systemd", "kernel": "",
         "initrd": "", "cmdline": ""},
    ),
    (
        "live-own-kernel",
        "method: live\nsquashfs: root.squashfs\nkernel: vmlinuz\ninitrd: initrd.img\n"
        "cmdline: console=ttyS0\n",
        {"squashfs": "root.squashfs", "init": "/sbin/init", "kernel": "vmlinuz",
         "initrd": "initrd.img", "cmdline": "console=ttyS0"},
    ),
    (
        "image",
        "method: image\nimage: disk.img\n",
        {"image": "disk.img", "target": "largest", "after": "reboot"},
    ),
    (
        "image-poweroff",
        "method: image\nimage: disk.img\ntarget: /dev/nvme0n1\nafter: poweroff\n",
        {"image": "disk.img", "target": "/dev/nvme0n1", "after": "poweroff"},
    ),
    (
        "image-device-is-target's-old-name",
        "method: image\nimage: disk.img\ndevice: /dev/sda\n",
        {"image": "disk.img", "target": "/dev/sda", "after": "reboot"},
    ),
    (
        "image-first-disk",
        "method: image\nimage: disk.img\ntarget: first\n",
        {"image": "disk.img", "target": "first", "after": "reboot"},
    ),
    (
        "null-optional",
        "method: kexec\nkernel: vmlinuz\ninitrd: initrd.img\ncmdline:\n",
        {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": ""},
    ),
]


@pytest.mark.parametrize(("text", "fields"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_every_method_accepts_its_keys_and_fills_defaults(folder, text, fields):
    spec = parse("dispname: An OS\n" + text, folder)

    assert spec.dispname == "An OS"
    assert spec.fields == fields


def test_dispname_defaults_to_the_given_name():
    text = "method: bin\nbin: hello\n"

    assert parse(text, OSS / "testbin", default_dispname="testbin").dispname == "testbin"


def test_a_numeric_dispname_is_read_as_text(folder):
    assert parse("dispname: 2024\nmethod: bin\nbin: hello\n", folder).dispname == "2024"


def test_every_method_has_documented_keys():
    assert set(COMMON_KEYS) == {"dispname", "method"}
    for method in METHODS:
        keys = method_keys(method)
        assert keys
        assert all(isinstance(k, KeyDoc) and k.doc for k in keys.values())
    assert method_keys("kexec")["kernel"].required
    assert method_keys("kexec")["cmdline"].default == ""
    assert "seeds the OS while the VM runs" in method_keys("qemu")["args"].doc


def test_method_keys_of_an_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="known methods are kexec"):
        method_keys("pxe")


BAD = [
    # (id, file text, key named in the message, fix hint in the message)
    (
        "missing-file",
        "method: kexec\nkernel: vmlinuz-lts\ninitrd: initrd.img\n",
        "kernel",
        "did you mean 'vmlinuz'",
    ),
    ("missing-file-lists-folder", "method: bin\nbin: nothere\n", "bin", "holds: boot, disk.img"),
    ("dotdot", "method: bin\nbin: ../etc/passwd\n", "bin", "leads out of the OS folder"),
    ("dotdot-inside", "method: bin\nbin: boot/../../hello\n", "bin", "leads out of the OS folder"),
    (
        "absolute",
        "method: kexec\nkernel: /boot/vmlinuz\ninitrd: initrd.img\n",
        "kernel",
        "copy the file into the OS folder",
    ),
    ("folder-not-file", "method: bin\nbin: boot\n", "bin", "not a regular file"),
    ("file-as-folder", "method: bin\nbin: hello/x\n", "bin", "not a folder"),
    ("empty-file-key", 'method: bin\nbin: ""\n', "bin", 'write e.g. "bin: hello"'),
    ("folder-itself", "method: bin\nbin: ./\n", "bin", 'write e.g. "bin: hello"'),
    ("missing-required", "method: kexec\nkernel: vmlinuz\n", "initrd", "initrd: initrd.img"),
    ("missing-method", "kernel: vmlinuz\n", "method", 'write e.g. "method: kexec"'),
    ("unknown-method", "method: kexek\n", "method", "did you mean 'kexec'"),
    ("method-not-a-string", "method: [kexec]\n", "method", "method: kexec"),
    ("unknown-key", "method: bin\nbin: hello\nbinarg: x\n", "binarg", "did you mean 'binargs'"),
    (
        "key-of-another-method",
        "method: bin\nbin: hello\nkernel: vmlinuz\n",
        "kernel",
        "belongs to method kexec",
    ),
    (
        "target-not-under-dev",
        "method: image\nimage: disk.img\ntarget: sda\n",
        "target",
        "largest or first or a device under /dev/",
    ),
    (
        "target-escapes-dev",
        "method: image\nimage: disk.img\ntarget: /dev/../etc/x\n",
        "target",
        "target: largest",
    ),
    (
        "target-misspelt",
        "method: image\nimage: disk.img\ntarget: largets\n",
        "target",
        "did you mean 'largest'",
    ),
    (
        "device-and-target",
        "method: image\nimage: disk.img\ndevice: /dev/sda\ntarget: first\n",
        "device",
        "keep 'target'",
    ),
    (
        "after-unknown",
        "method: image\nimage: disk.img\ntarget: /dev/sda\nafter: halt\n",
        "after",
        "one of reboot, poweroff",
    ),
    (
        "live-kernel-without-initrd",
        "method: live\nsquashfs: root.squashfs\nkernel: vmlinuz\n",
        "initrd",
        "initrd: initrd.img",
    ),
    (
        "live-initrd-without-kernel",
        "method: live\nsquashfs: root.squashfs\ninitrd: initrd.img\n",
        "kernel",
        "kernel: vmlinuz",
    ),
    (
        "live-cmdline-without-kernel",
        "method: live\nsquashfs: root.squashfs\ncmdline: quiet\n",
        "cmdline",
        "phase-1 kernel",
    ),
    (
        "live-kernel-missing-file",
        "method: live\nsquashfs: root.squashfs\nkernel: bzImage\ninitrd: initrd.img\n",
        "kernel",
        "no file 'bzImage'",
    ),
    (
        "init-relative",
        "method: live\nsquashfs: root.squashfs\ninit: sbin/init\n",
        "init",
        "init: /sbin/init",
    ),
    ("list-value", "method: bin\nbin: hello\nbinargs: [-a, -b]\n", "binargs", "one string"),
    ("mapping-value", "method: kexec\nkernel: {a: 1}\ninitrd: initrd.img\n", "kernel", "one line"),
    ("bool-value", "method: bin\nbin: hello\nbinargs: yes\n", "binargs", "quote it"),
    ("two-lines", 'method: bin\nbin: hello\nbinargs: "a\\nb"\n', "binargs", "on one line"),
    ("empty-dispname", 'dispname: ""\nmethod: bin\nbin: hello\n', "dispname", "dispname:"),
    ("not-a-mapping", "- kexec\n", "config.yaml: expected a mapping", "one key per line"),
    ("empty", "", "config.yaml: the file is empty", "method: kexec"),
    ("yaml-syntax", "method: bin\nbin: [hello\n", "line 3", "fix the syntax"),
]


@pytest.mark.parametrize(("text", "key", "fix"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_every_mistake_names_its_key_and_the_fix(folder, text, key, fix):
    with pytest.raises(ConfigError) as caught:
        parse(text, folder, default_dispname="An OS")

    message = str(caught.value)
    assert message.startswith("config.yaml: ")
    assert key in message
    assert fix in message


def test_a_missing_dispname_without_a_default_is_an_error(folder):
    with pytest.raises(ConfigError, match="dispname: missing"):
        parse("method: bin\nbin: hello\n", folder)


def test_a_symlinked_file_is_refused(folder):
    (folder / "link").symlink_to(folder / "hello")

    with pytest.raises(ConfigError, match="bin: 'link' is a symbolic link"):
        parse("dispname: X\nmethod: bin\nbin: link\n", folder)


def test_a_file_behind_a_symlinked_folder_is_refused(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "vmlinuz").write_bytes(b"elsewhere")
    (folder / "escape").symlink_to(outside)

    with pytest.raises(ConfigError, match="symbolic link"):
        parse("dispname: X\nmethod: kexec\nkernel: escape/vmlinuz\ninitrd: initrd.img\n", folder)


def test_a_folder_without_config_yaml_says_how_to_add_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_os_config(tmp_path)

    message = str(caught.value)
    assert str(tmp_path / "config.yaml") in message
    assert "boottorrentctl add-os" in message


def test_errors_from_a_loaded_file_name_its_path(tmp_path):
    shutil.copytree(OSS / "testos", tmp_path / "testos")
    (tmp_path / "testos/initramfs-linux-lts.img").unlink()

    with pytest.raises(ConfigError) as caught:
        load_os_config(tmp_path / "testos")

    assert str(caught.value).startswith(f"{tmp_path / 'testos/config.yaml'}: initrd: ")
    assert "vmlinuz-linux-lts" in str(caught.value)  # what the folder holds


@pytest.mark.parametrize(
    "values",
    [
        {
            "dispname": "Debian 12",
            "method": "kexec",
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "cmdline": "quiet console=ttyS0",
        },
        {"dispname": "Tool", "method": "bin", "bin": "hello", "binargs": "--yes: no # x"},
        {"dispname": "DOS", "method": "qemu", "args": "-fda floppy.img"},
        {"dispname": "Live", "method": "live", "squashfs": "root.squashfs"},
        {
            "dispname": "Lab",
            "method": "image",
            "image": "disk.img",
            "target": "/dev/sda",
            "after": "poweroff",
        },
        {"dispname": "123", "method": "bin", "bin": "hello", "binargs": "true"},
    ],
    ids=lambda values: values["method"] + "-" + values["dispname"],
)
def test_a_rendered_config_reads_back_to_the_same_spec(folder, values):
    text = render_os_config(values, folder)
    spec = parse_os_config(yaml.safe_load(text), folder)

    assert spec.dispname == values["dispname"]
    assert spec.method == values["method"]
    assert {k: v for k, v in values.items() if k in spec.fields} == {
        k: v for k, v in spec.fields.items() if k in values
    }
    assert text.startswith("# ")


def test_rendering_without_a_folder_checks_the_form_of_file_keys():
    text = render_os_config({"method": "bin", "bin": "tool"}, default_dispname="tool")

    assert "dispname: tool\n" in text
    with pytest.raises(ConfigError, match="leads out of the OS folder"):
        render_os_config({"dispname": "X", "method": "bin", "bin": "../tool"})


def test_rendering_refuses_what_loading_refuses(folder):
    with pytest.raises(ConfigError, match="no file 'nothere'"):
        render_os_config({"dispname": "X", "method": "bin", "bin": "nothere"}, folder)
    with pytest.raises(ConfigError, match="unknown key 'kernel' for method bin"):
        render_os_config({"dispname": "X", "method": "bin", "bin": "hello", "kernel": "v"})
