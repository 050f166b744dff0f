# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The bypass4netns role and the node's annotations: what can be checked without hosts.

Not yet run on hosts: the daemon, the node's annotations taking effect and the figures are the
test bed's (bench/network.sh).
"""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader

from rendering import (
    REPO,
    conditions_failed,
    load_tasks,
    node_variables,
    render_role_template,
    role_on_host,
    task_named,
    template,
    trusted,
)

NERDCTL = {"u7s_engine": "nerdctl"}
CHECKSUMS = {"bypass4netnsd": "d" * 64, "bypass4netns": "b" * 64}


def nerdctl_spec(inventory: dict | None = None, host: str = "host1") -> dict:
    variables = node_variables({**NERDCTL, **(inventory or {})}, host)
    return template(task_named("node", "container-nerdctl.yml", "Run the node container")["vars"]["node_nerdctl_spec"],
                    variables)


def bypass4netns_variables(inventory: dict | None = None, **facts) -> dict:
    return role_on_host("bypass4netns", {**NERDCTL, **(inventory or {})}, **facts)


# --- the node's spec -----------------------------------------------------------------------------------------

def test_the_node_carries_nerdctls_bypass4netns_annotations_with_it_on():
    annotations = nerdctl_spec({"u7s_bypass4netns": "auto"})["annotations"]
    assert annotations["nerdctl/bypass4netns"] == "true"
    assert annotations["nerdctl/bypass4netns-ignore-bind"] == "true"
    assert json.loads(annotations["nerdctl/bypass4netns-ignore-subnets"]) == [
        "0.0.0.0/32", "10.96.0.0/16", "10.100.0.0/16", "10.244.0.0/16", "127.0.0.0/8", "::/127"]


def test_the_ignored_networks_follow_the_settings():
    annotations = nerdctl_spec({"u7s_bypass4netns": "auto", "u7s_pod_cidr": "10.32.0.0/16", "u7s_service_cidr": "10.33.0.0/20",
                                "u7s_node_subnet_pool": "10.200.0.0/16"})["annotations"]
    assert json.loads(annotations["nerdctl/bypass4netns-ignore-subnets"]) == [
        "0.0.0.0/32", "10.32.0.0/16", "10.33.0.0/20", "10.200.0.0/16", "127.0.0.0/8", "::/127"]


def test_without_bypass4netns_the_node_has_no_annotations():
    assert nerdctl_spec({"u7s_bypass4netns": "false"})["annotations"] == {}
    assert nerdctl_spec()["annotations"]["nerdctl/bypass4netns"] == "true"  # the default, auto


def nerdctl_block(inventory: dict | None = None, action: str = "create", **facts) -> tuple[list, dict]:
    block = task_named("node", "container-nerdctl.yml", "Run the node container")
    variables = {**node_variables({**NERDCTL, **(inventory or {})}), **facts}
    variables = {**variables, **block["vars"], "node_nerdctl_action": action, "ansible_check_mode": False}
    return block["block"], variables


@pytest.mark.parametrize(("setting", "action", "socket", "refused"), [
    ("auto", "create", False, True),
    ("auto", "start", False, True),
    ("auto", "create", True, False),
    ("auto", "none", False, False),
    ("false", "create", False, False),
])
def test_the_node_is_not_started_with_bypass4netns_while_bypass4netnsd_is_missing(setting, action, socket, refused):
    tasks, variables = nerdctl_block({"u7s_bypass4netns": setting}, action,
                                     node_bypass4netnsd_socket={"stat": {"exists": socket}})
    refuse = next(task for task in tasks if task["name"].startswith("Refuse to start the node with bypass4netns"))
    assert (conditions_failed(refuse["when"], variables) == []) is refused
    if refused:
        assert "bypass4netnsd.sock" in template(refuse["ansible.builtin.fail"]["msg"], variables)


# --- the daemon's unit ---------------------------------------------------------------------------------------

def unit(inventory: dict | None = None) -> str:
    variables = bypass4netns_variables(inventory, bypass4netns_checksums=CHECKSUMS)
    return render_role_template("bypass4netns", "bypass4netnsd.service.j2", variables)


def unit_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_unit_runs_the_engine_tools_daemon_where_nerdctl_looks_for_it():
    text = unit()
    lines = unit_lines(text)
    # nerdctl's pkg/bypass4netnsutil: $XDG_RUNTIME_DIR/bypass4netnsd.sock (%t in a user unit).
    assert ("ExecStart=/usr/local/bin/bypass4netnsd --socket=%t/bypass4netnsd.sock "
            "--com-socket=%t/bypass4netnsd-com.sock") in lines
    assert "Environment=XDG_RUNTIME_DIR=%t" in lines
    assert any(line.startswith("ExecStartPost=") and "-S %t/bypass4netnsd.sock" in line for line in lines)
    # Up before the user's containerd (its restart monitor starts the node after a reboot), in default.target.
    assert "Before=containerd.service" in lines and "WantedBy=default.target" in lines
    assert "Restart=always" in lines and "KillMode=mixed" in lines
    # nsenter is found on the PATH the unit gives.
    path = next(line for line in lines if line.startswith("Environment=PATH="))
    assert "/usr/bin" in path.split("=", 2)[2].split(":")


def test_the_unit_names_both_binaries_checksums():
    """New engine tools are a changed unit, which the role restarts (and takes the node out first)."""
    text = unit()
    for name, checksum in CHECKSUMS.items():
        assert "#   %s sha256:%s" % (name, checksum) in text.splitlines()


def test_the_unit_escapes_the_shells_dollars():
    """systemd expands $NAME in Exec lines itself: the ExecStartPost script's own $ are written $$."""
    (post,) = [line for line in unit_lines(unit()) if line.startswith("ExecStartPost=")]
    assert "$$(seq" in post and "$(" not in post.replace("$$(", "")


def test_the_daemon_comes_from_beside_nerdctl():
    bin_dir = "/opt/u7s/bin"
    variables = bypass4netns_variables({"rootless_runtime_nerdctl_bin_dir": bin_dir}, bypass4netns_checksums=CHECKSUMS)
    assert template("{{ bypass4netns_bin_dir }}", variables) == bin_dir
    assert "ExecStart=%s/bypass4netnsd " % bin_dir in render_role_template(
        "bypass4netns", "bypass4netnsd.service.j2", variables)


# --- when the role changes what ------------------------------------------------------------------------------

def enable_block() -> list:
    block = task_named("bypass4netns", "enable.yml", "Run bypass4netnsd as the cluster user")
    return block["block"]


@pytest.mark.parametrize(("unit_changed", "active", "removes"), [
    (True, "active", True),
    (True, "inactive", False),
    (False, "active", False),
    (False, "inactive", False),
])
def test_the_node_goes_only_when_bypass4netnsd_restarts_under_it(unit_changed, active, removes):
    (take_out,) = [task for task in enable_block()
                   if task["name"] == "Take the node out before bypass4netnsd restarts under it"]
    assert take_out["ansible.builtin.include_tasks"] == "remove-node.yml"
    variables = bypass4netns_variables(bypass4netns_unit_file={"changed": unit_changed},
                                       bypass4netns_active={"stdout": active + "\n"})
    assert (conditions_failed(take_out["when"], variables) == []) is removes


@pytest.mark.parametrize(("unit_changed", "state"), [(True, "restarted"), (False, "started")])
def test_the_daemon_restarts_only_for_a_changed_unit(unit_changed, state):
    """A second run with the same tools changes nothing (started and enabled already)."""
    (start,) = [task for task in enable_block() if "ansible.builtin.systemd_service" in task]
    variables = bypass4netns_variables(bypass4netns_unit_file={"changed": unit_changed})
    arguments = template(start["ansible.builtin.systemd_service"], variables)
    assert arguments["state"] == state and arguments["enabled"] is True and arguments["scope"] == "user"
    assert arguments["daemon_reload"] is unit_changed


@pytest.mark.parametrize(("running", "stops"), [(True, True), (False, False)])
def test_remove_node_stops_a_running_node_then_removes_it(running, stops):
    """Removed, not only stopped: nerdctl runs the postStop hook (which needs the daemon) when the task is deleted."""
    inspect, block = load_tasks("bypass4netns", "remove-node.yml")
    stop, remove = block["block"]
    result = {"rc": 0, "stdout": json.dumps([{"State": {"Running": running}}]), "stderr": ""}
    variables = bypass4netns_variables(bypass4netns_node=result)
    assert conditions_failed([block["when"]], variables) == []
    assert (conditions_failed([stop["when"]], variables) == []) is stops
    assert template(stop["ansible.builtin.command"]["argv"], variables) == [
        "/usr/local/bin/nerdctl", "stop", "--time", "60", "u7s-node"]
    assert template(remove["ansible.builtin.command"]["argv"], variables) == [
        "/usr/local/bin/nerdctl", "rm", "--force", "u7s-node"]
    assert stop["changed_when"] is True and remove["changed_when"] is True and inspect["changed_when"] is False


def test_remove_node_takes_a_missing_node_as_an_answer():
    inspect, block = load_tasks("bypass4netns", "remove-node.yml")
    result = {"rc": 1, "stdout": "", "stderr": "time=... level=fatal msg=\"1 errors:\\nno such container: u7s-node\""}
    variables = bypass4netns_variables(bypass4netns_node=result)
    assert conditions_failed(inspect["failed_when"], variables) != []
    assert conditions_failed([block["when"]], variables) != []


@pytest.mark.parametrize(("on", "file"), [(True, "enable.yml"), (False, "disable.yml")])
def test_main_enables_or_takes_away_by_the_plan(on, file):
    tasks = load_tasks("bypass4netns", "main.yml")
    variables = bypass4netns_variables({"u7s_bypass4netns": "true" if on else "false"})
    chosen = [task["ansible.builtin.include_tasks"] for task in tasks if "ansible.builtin.include_tasks" in task
              and conditions_failed([task["when"]], variables) == []]
    assert chosen == [file]


def test_disable_acts_only_where_an_earlier_run_installed_the_unit():
    look, take_away = load_tasks("bypass4netns", "disable.yml")
    assert look["ansible.builtin.stat"]["path"] == "{{ bypass4netns_unit_path }}"
    assert take_away["when"] == "bypass4netns_unit_file.stat.exists"
    # The node first, while the daemon answers; then the service.
    included = [task["ansible.builtin.include_tasks"] for task in take_away["block"]]
    assert included == ["remove-node.yml", "remove-service.yml"]


def test_the_unit_path_is_the_users():
    variables = bypass4netns_variables()
    assert template("{{ bypass4netns_unit_path }}", variables) == "/home/u7s/.config/systemd/user/bypass4netnsd.service"
    assert template("{{ bypass4netns_socket }}", variables) == "/run/user/1001/bypass4netnsd.sock"


# --- where the role runs -------------------------------------------------------------------------------------

def test_hosts_yml_runs_it_after_the_engine_and_before_the_node():
    plays = trusted(DataLoader().load_from_file(str(REPO / "playbooks/hosts.yml")))
    roles = [entry["role"] for play in plays for entry in play.get("roles", [])]
    assert roles.index("u7s.cluster.rootless_runtime") < roles.index("u7s.cluster.bypass4netns")
    assert roles.index("u7s.cluster.bypass4netns") < roles.index("u7s.cluster.node")


def test_the_reset_removes_it_only_with_u7s_reset_hosts():
    (block,) = load_tasks("bypass4netns", "reset.yml")
    assert block["when"] == "u7s_reset_hosts | bool"
    remove = block["block"][-1]
    assert remove["ansible.builtin.include_tasks"] == "remove-service.yml"
    stop, remove_unit, forget = yaml.safe_load((REPO / "roles/bypass4netns/tasks/remove-service.yml").read_text())[0][
        "block"]
    assert stop["ansible.builtin.systemd_service"]["state"] == "stopped"
    assert stop["ansible.builtin.systemd_service"]["enabled"] is False
    assert remove_unit["ansible.builtin.file"]["state"] == "absent"
