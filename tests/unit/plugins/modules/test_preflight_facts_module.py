# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The u7s.cluster.preflight_facts module: read-only, facts returned twice."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.modules import preflight_facts as preflight_facts_module

FAKE_FACTS = {
    "kernel_release": "6.12.48+deb13-amd64",
    "sysctl": {"user.max_user_namespaces": 63368},
    "cgroup": {"version": "v2", "controllers": ["cpu"], "v1_controllers": [], "mountpoint": "/sys/fs/cgroup"},
    "user": {"name": "u7s", "exists": False, "uid": None, "gid": None, "home": None, "shell": None},
    "subuid": [],
    "subgid": [],
}


@pytest.fixture
def run(run_module: t.Callable[..., dict[str, t.Any]]) -> t.Callable[..., dict[str, t.Any]]:
    return lambda args: run_module(preflight_facts_module.main, args)


@pytest.mark.parametrize("check_mode", [False, True])
def test_returns_facts_and_ansible_facts_unchanged(monkeypatch, run, check_mode: bool) -> None:
    asked = []

    def gather(user: str, apparmor_binaries: t.Sequence[str] = ()) -> dict[str, t.Any]:
        asked.append(user)
        assert list(apparmor_binaries) == []
        return FAKE_FACTS

    monkeypatch.setattr(preflight_facts_module, "gather_preflight_facts", gather)
    result = run(dict(user="u7s", _ansible_check_mode=check_mode))
    assert asked == ["u7s"]
    assert result["changed"] is False
    assert result["facts"] == FAKE_FACTS
    assert result["ansible_facts"] == {"u7s_preflight": FAKE_FACTS}


def test_on_this_machine(run) -> None:
    """Gathers real facts from the machine running the tests (whatever it is)."""
    result = run(dict(user="u7s-no-such-user"))
    facts = result["facts"]
    assert result["changed"] is False
    assert facts["user"]["exists"] is False
    assert facts["cgroup"]["version"] in ("v1", "v2", "hybrid")
    assert set(facts["sysctl"]) == {
        "user.max_user_namespaces",
        "kernel.unprivileged_userns_clone",
        "kernel.apparmor_restrict_unprivileged_userns",
        "net.ipv4.ip_unprivileged_port_start",
    }
    assert isinstance(facts["subuid"], list) and isinstance(facts["subgid"], list)
