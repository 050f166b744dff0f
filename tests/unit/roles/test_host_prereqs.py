# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The host_prereqs role's templates, rendered as ansible-playbook does, and read back by the preflight facts."""

from __future__ import annotations

import pathlib

from ansible_collections.u7s.cluster.plugins.module_utils import host_facts
from rendering import evaluate, render_role_template, role_variables, task_named

SESSION = {"uid": 1001, "gid": 1001, "home": "/home/u7s", "exists": True}


def apparmor_file(binaries: list, distribution_profiles: list | None = None) -> tuple[list, str]:
    variables = role_variables("host_prereqs", {"host_prereqs_apparmor_userns_binaries": binaries},
                               facts={"ansible_facts": {"u7s_preflight": {
                                   "apparmor_profiles": distribution_profiles or []}}})
    task = task_named("host_prereqs", "preflight.yml", "Decide whether the host can run a rootless cluster")
    expression = task["ansible.builtin.set_fact"]["host_prereqs_apparmor_profiles"].strip()
    profiles = evaluate(expression[2:-2], variables)
    text = render_role_template("host_prereqs", "apparmor-userns.j2",
                                {**variables, "host_prereqs_apparmor_profiles": profiles})
    return profiles, text


def test_apparmor_profile_by_default():
    profiles, text = apparmor_file(["/usr/bin/rootlesskit"])
    assert profiles == [{"name": "u7s-userns-rootlesskit", "binary": "/usr/bin/rootlesskit"}]
    assert "profile u7s-userns-rootlesskit /usr/bin/rootlesskit flags=(unconfined) {" in text
    assert "include if exists <local/u7s-userns-rootlesskit>" in text


def test_apparmor_binaries_sharing_a_basename_get_profiles_of_their_own():
    profiles, text = apparmor_file(["/usr/bin/rootlesskit", "/opt/rootless/bin/rootlesskit"])
    names = [line.split()[1] for line in text.splitlines() if line.startswith("profile ")]
    assert len(names) == 2 and len(set(names)) == 2
    assert [host_facts.parse_profile_header(line)[1] for line in text.splitlines() if line.startswith("profile ")] == [
        "/usr/bin/rootlesskit", "/opt/rootless/bin/rootlesskit"]
    assert [profile["name"] for profile in profiles] == names


def test_apparmor_binary_the_distribution_covers_gets_no_profile():
    ubuntu = [{"binary": "/usr/bin/rootlesskit", "profile": "rootlesskit", "file": "/etc/apparmor.d/rootlesskit"}]
    profiles, text = apparmor_file(["/usr/bin/rootlesskit"], ubuntu)
    assert profiles == [] and not [line for line in text.splitlines() if line.startswith("profile ")]
    task = task_named("host_prereqs", "configure.yml", "Let rootlesskit create user namespaces under AppArmor's restriction")
    assert "host_prereqs_apparmor_profiles | length > 0" in task["when"]


def test_the_chown_unit_is_read_back_by_the_preflight_facts(tmp_path: pathlib.Path):
    """What host_prereqs_cgroup_v1_chown installs is what preflight recognizes as one user's delegation."""
    variables = role_variables("host_prereqs", {"u7s_user": "alice"}, facts={"rootless_runtime_session": SESSION})
    text = render_role_template("host_prereqs", "u7s-cgroup-v1-chown.service.j2", variables)
    path = tmp_path / host_facts.CGROUP_V1_CHOWN_UNIT.lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert host_facts.read_cgroup_v1_chown_unit(str(tmp_path)) == {
        "path": host_facts.CGROUP_V1_CHOWN_UNIT, "uid": 1001, "user": "alice"}


def test_preflight_passes_the_nodes_published_ports_and_the_settings():
    task = task_named("host_prereqs", "preflight.yml", "Decide whether the host can run a rootless cluster")
    expression = task["ansible.builtin.set_fact"]["host_prereqs_problems"]
    for name in ("settings_node.published_ports", "settings_node.port_names", "host_prereqs_allow_unsupported_os",
                 "inventory_hostname", "u7s_allow_cgroup_v1"):
        assert name in expression
