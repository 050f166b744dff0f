"""Bad input stops the play in preflight, and the host is left exactly as it was."""

from __future__ import annotations

import pytest

# Everything the roles would write or change, plus the package database.
WATCHED = [
    "/etc/passwd",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/systemd/system/user@.service.d/delegate.conf",
    "/etc/systemd/system/u7s-cgroup-v1-chown.service",
    "/etc/modules-load.d/u7s.conf",
    "/etc/sysctl.d/99-u7s.conf",
    "/etc/apparmor.d/u7s-userns",
    "/var/lib/dpkg/status",
]


def fingerprint(host) -> str:
    files = " ".join(WATCHED)
    script = (
        f"for f in {files}; do if [ -e $f ]; then sha256sum $f; else echo absent $f; fi; done;"
        " ls -A /var/lib/systemd/linger 2>/dev/null; ls -A /home"
    )
    return host.root(script).stdout


def test_missing_user_is_refused_before_any_change(testbed_host, run_playbook):
    before = fingerprint(testbed_host)
    result = run_playbook({"u7s_user": "ghost", "host_prereqs_user_create": False})
    assert result.returncode != 0
    assert f"Preflight failed on {testbed_host.name}" in result.stdout
    assert "ghost" in result.stdout
    assert "host_prereqs_user_create" in result.stdout  # the fix is named
    assert fingerprint(testbed_host) == before


@pytest.fixture
def overlapping_user(testbed_host):
    """The cluster user exists, and another user's subuid range overlaps it."""
    testbed_host.root(
        "useradd -m u7s; useradd -m other;"
        " printf 'u7s:100000:65536\\nother:150000:65536\\n' > /etc/subuid;"
        " printf 'u7s:100000:65536\\nother:165536:65536\\n' > /etc/subgid"
    )
    yield
    testbed_host.root("userdel -r other; userdel -r u7s; : > /etc/subuid; : > /etc/subgid")


def test_overlapping_subuid_range_is_refused_before_any_change(testbed_host, run_playbook, overlapping_user):
    before = fingerprint(testbed_host)
    result = run_playbook({})
    assert result.returncode != 0
    assert f"Preflight failed on {testbed_host.name}" in result.stdout
    assert "/etc/subuid" in result.stdout and "other" in result.stdout
    assert fingerprint(testbed_host) == before


def test_nerdctl_is_refused_before_any_change(testbed_host, run_playbook):
    before = fingerprint(testbed_host)
    result = run_playbook({"u7s_engine": "nerdctl"})
    assert result.returncode != 0
    assert "u7s_engine=nerdctl is not supported yet" in result.stdout
    assert fingerprint(testbed_host) == before


def test_unknown_engine_is_refused_by_the_argument_spec(testbed_host, run_playbook):
    before = fingerprint(testbed_host)
    result = run_playbook({"u7s_engine": "lxc"})
    assert result.returncode != 0
    assert "rootless_runtime_engine" in result.stdout and "lxc" in result.stdout
    assert fingerprint(testbed_host) == before
