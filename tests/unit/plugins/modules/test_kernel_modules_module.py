# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The u7s.cluster.kernel_modules module with a fake kernel tree and a fake modprobe."""

from __future__ import annotations

import pathlib
import typing as t

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.u7s.cluster.plugins.module_utils import kernel_modules as kernel_modules_utils
from ansible_collections.u7s.cluster.plugins.modules import kernel_modules as kernel_modules_module

RELEASE = "6.1.0-40-amd64"
HEADER = (
    "# Managed by Ansible (u7s.cluster.kernel_modules); local changes are overwritten.\n"
    "# Kernel modules that rootless Kubernetes (Usernetes) needs, loaded at boot.\n"
)


class FakeHost:
    """A fake root tree plus a fake modprobe that "loads" into the fake /proc/modules."""

    def __init__(self, root: pathlib.Path, loadable: set[str]) -> None:
        self.root = root
        self.loadable = loadable
        self.commands: list[list[str]] = []
        (root / "proc").mkdir(parents=True)
        (root / "proc" / "modules").write_text("ip_tables 32768 0 - Live 0x0\n", encoding="utf-8")
        modules_dir = root / "lib" / "modules" / RELEASE
        modules_dir.mkdir(parents=True)
        (modules_dir / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n", encoding="utf-8")

    def run_command(self, command: list[str], **kwargs: t.Any) -> tuple[int, str, str]:
        self.commands.append(list(command))
        # Like modprobe and the kernel: - and _ alike, _ in /proc/modules.
        name = command[-1].replace("-", "_")
        if name not in self.loadable:
            return 1, "", "modprobe: FATAL: Module %s not found." % name
        if "--dry-run" not in command:
            with open(self.root / "proc" / "modules", "a", encoding="utf-8") as handle:
                handle.write("%s 1 0 - Live 0x0\n" % name)
        return 0, "", ""


@pytest.fixture
def host(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost(tmp_path / "root", {"br_netfilter", "vxlan"})
    monkeypatch.setattr(
        kernel_modules_module, "ensure_modules",
        lambda names, modprobe, release: kernel_modules_utils.ensure_modules(
            names, modprobe, RELEASE, str(fake.root)
        ),
    )
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *args, **kwargs: "/sbin/" + name)
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, command, **kwargs: fake.run_command(command))
    return fake


@pytest.fixture
def run(run_module: t.Callable[..., dict[str, t.Any]]) -> t.Callable[..., dict[str, t.Any]]:
    return lambda args: run_module(kernel_modules_module.main, args)


NAMES = ["ip_tables", "overlay", "br-netfilter", "vxlan", "nf_tables"]


def test_loads_missing_modules_and_reports_unavailable_without_failing(host, tmp_path, run, module_warnings) -> None:
    persist = tmp_path / "etc" / "modules-load.d" / "u7s.conf"
    result = run(dict(names=NAMES, persist_file=str(persist), _ansible_diff=True))
    assert result.get("failed") is not True
    assert result["changed"] is True
    assert result["already_loaded"] == ["ip_tables"]
    assert result["builtin"] == ["overlay"]
    assert result["loaded"] == ["br-netfilter", "vxlan"]
    assert list(result["unavailable"]) == ["nf_tables"]
    assert len(module_warnings) == 1
    assert module_warnings[0].startswith("Kernel module nf_tables is not available and was not loaded: modprobe: FATAL")
    assert host.commands == [["/sbin/modprobe", "br-netfilter"], ["/sbin/modprobe", "vxlan"], ["/sbin/modprobe", "nf_tables"]]
    # The unavailable module stays out of the boot list.
    assert persist.read_text(encoding="utf-8") == HEADER + "ip_tables\noverlay\nbr-netfilter\nvxlan\n"
    assert result["diff"]["before"] == ""

    again = run(dict(names=NAMES, persist_file=str(persist)))
    assert again["changed"] is False
    assert again["loaded"] == []
    assert again["already_loaded"] == ["ip_tables", "br-netfilter", "vxlan"]


def test_check_mode_uses_dry_run_and_writes_nothing(host, tmp_path, run) -> None:
    persist = tmp_path / "u7s.conf"
    result = run(dict(names=NAMES, persist_file=str(persist), _ansible_check_mode=True, _ansible_diff=True))
    assert result["changed"] is True
    assert result["loaded"] == ["br-netfilter", "vxlan"]
    assert all("--dry-run" in command for command in host.commands)
    assert not persist.exists()
    assert "br-netfilter\nvxlan\n" in result["diff"]["after"]
    assert "br_netfilter" not in (host.root / "proc" / "modules").read_text(encoding="utf-8")


def test_persist_file_rewritten_only_when_different(host, tmp_path, run) -> None:
    persist = tmp_path / "u7s.conf"
    persist.write_text(HEADER + "ip_tables\n", encoding="utf-8")
    unchanged = run(dict(names=["ip_tables"], persist_file=str(persist)))
    assert unchanged["changed"] is False

    changed = run(dict(names=["ip_tables", "overlay"], persist_file=str(persist), _ansible_diff=True))
    assert changed["changed"] is True
    assert changed["loaded"] == []
    assert changed["diff"]["before"] == HEADER + "ip_tables\n"
    assert persist.read_text(encoding="utf-8") == HEADER + "ip_tables\noverlay\n"


def test_without_modprobe_everything_missing_is_unavailable(host, monkeypatch, run) -> None:
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *args, **kwargs: None)
    result = run(dict(names=["vxlan", "overlay"]))
    assert result["changed"] is False
    assert result["builtin"] == ["overlay"]
    assert "modprobe not found" in result["unavailable"]["vxlan"]
    assert host.commands == []
