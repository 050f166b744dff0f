# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Kernel module classification against a fake /proc, /sys and /lib/modules tree."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.kernel_modules import (
    canonical_name,
    ensure_modules,
    parse_modules_builtin,
    parse_modules_builtin_modinfo,
    read_builtin_modules,
    read_proc_modules,
    render_modules_load_file,
)

RELEASE = "6.12.48+deb13-amd64"

PROC_MODULES = """\
br_netfilter 36864 0 - Live 0x0000000000000000
bridge 421888 1 br_netfilter, Live 0x0000000000000000
ip_tables 32768 0 - Live 0x0000000000000000
"""

MODULES_BUILTIN = """\
kernel/fs/overlayfs/overlay.ko
kernel/net/netfilter/nf_conntrack.ko
kernel/drivers/net/dummy.ko.xz
"""

# modules.builtin.modinfo is NUL separated "module.key=value" records.
MODULES_BUILTIN_MODINFO = "\0".join([
    "vxlan.license=GPL",
    "vxlan.description=Driver for VXLAN encapsulated traffic",
    "ip6_tables.license=GPL",
    "",
])


class FakeModprobe:
    """Records calls; loads the names in loadable, fails on the rest."""

    def __init__(self, loadable: set[str]) -> None:
        self.loadable = loadable
        self.calls: list[str] = []

    def __call__(self, name: str) -> tuple[int, str, str]:
        self.calls.append(name)
        if name in self.loadable:
            return 0, "", ""
        return 1, "", "modprobe: FATAL: Module %s not found in directory /lib/modules/%s\n" % (name, RELEASE)


@pytest.fixture
def fake_root(tmp_path: pathlib.Path) -> str:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "modules").write_text(PROC_MODULES, encoding="utf-8")
    modules_dir = tmp_path / "lib" / "modules" / RELEASE
    modules_dir.mkdir(parents=True)
    (modules_dir / "modules.builtin").write_text(MODULES_BUILTIN, encoding="utf-8")
    (modules_dir / "modules.builtin.modinfo").write_bytes(MODULES_BUILTIN_MODINFO.encode())
    # Built in with parameters but not in modules.builtin (as seen in containers).
    (tmp_path / "sys" / "module" / "nf_tables").mkdir(parents=True)
    return str(tmp_path)


def test_canonical_name() -> None:
    assert canonical_name("ip6-tables") == "ip6_tables"
    assert canonical_name(" br_netfilter ") == "br_netfilter"


def test_read_proc_modules(fake_root: str) -> None:
    assert read_proc_modules(fake_root) == {"br_netfilter", "bridge", "ip_tables"}


def test_builtin_parsers() -> None:
    assert parse_modules_builtin(MODULES_BUILTIN) == {"overlay", "nf_conntrack", "dummy"}
    assert parse_modules_builtin_modinfo(MODULES_BUILTIN_MODINFO) == {"vxlan", "ip6_tables"}


def test_read_builtin_modules_combines_both_files(fake_root: str) -> None:
    assert read_builtin_modules(RELEASE, fake_root) == {"overlay", "nf_conntrack", "dummy", "vxlan", "ip6_tables"}


def test_missing_files_mean_nothing_known(tmp_path: pathlib.Path) -> None:
    assert read_proc_modules(str(tmp_path)) == set()
    assert read_builtin_modules(RELEASE, str(tmp_path)) == set()


def test_classification(fake_root: str) -> None:
    modprobe = FakeModprobe({"iptable_nat"})
    result = ensure_modules(
        ["br-netfilter", "overlay", "ip6-tables", "nf_tables", "iptable_nat", "wireguard"],
        modprobe, RELEASE, fake_root,
    )
    assert result.already_loaded == ["br-netfilter", "nf_tables"]
    assert result.builtin == ["overlay", "ip6-tables"]
    assert result.loaded == ["iptable_nat"]
    assert list(result.unavailable) == ["wireguard"]
    assert "Module wireguard not found" in result.unavailable["wireguard"]
    assert result.available == ["br-netfilter", "overlay", "ip6-tables", "nf_tables", "iptable_nat"]
    assert result.changed is True
    # modprobe only runs for modules that are neither loaded nor built in.
    assert modprobe.calls == ["iptable_nat", "wireguard"]


def test_nothing_to_load_is_unchanged(fake_root: str) -> None:
    modprobe = FakeModprobe(set())
    result = ensure_modules(["bridge", "vxlan"], modprobe, RELEASE, fake_root)
    assert result.changed is False
    assert modprobe.calls == []


def test_duplicates_and_blank_names_are_skipped(fake_root: str) -> None:
    modprobe = FakeModprobe({"veth"})
    result = ensure_modules(["veth", "veth", "", "ip_tables", "ip-tables"], modprobe, RELEASE, fake_root)
    assert result.loaded == ["veth"]
    assert result.already_loaded == ["ip_tables"]
    assert modprobe.calls == ["veth"]


def test_modprobe_failure_without_message(fake_root: str) -> None:
    result = ensure_modules(["ghost"], lambda name: (1, "", ""), RELEASE, fake_root)
    assert result.unavailable == {"ghost": "modprobe exited with 1"}
    assert result.changed is False


def test_render_modules_load_file() -> None:
    text = render_modules_load_file(["br_netfilter", "vxlan"])
    lines = text.splitlines()
    assert lines[0].startswith("# Managed by Ansible")
    assert lines[-2:] == ["br_netfilter", "vxlan"]
    assert text.endswith("vxlan\n")
