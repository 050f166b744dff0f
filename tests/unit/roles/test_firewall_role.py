# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The firewall role's firewalld and ufw tasks, templated from the real task files with recorded command output."""

from __future__ import annotations

import base64
import json

from rendering import conditions_failed, role_on_host, task_named, template

PUBLIC = "public\n  target: default\n  services: ssh\n  ports: 10250/tcp\n  protocols: \n"
UFW = ("Status: active\nDefault: deny (incoming), allow (outgoing), deny (routed)\n\n"
       "To                         Action      From\n--                         ------      ----\n"
       "22/tcp                     ALLOW IN    Anywhere\n")


def control_plane(**facts):
    return role_on_host("firewall", host="host1", **facts)


def test_firewalld_is_used_only_when_it_is_active():
    assert template("{{ firewall_firewalld }}", control_plane(firewall_firewalld_active={"stdout": "active\n"}))
    assert not template("{{ firewall_firewalld }}", control_plane(firewall_firewalld_active={"stdout": "inactive"}))
    assert not template("{{ firewall_firewalld }}", control_plane(firewall_firewalld_active={"skipped": True}))


def test_the_plan_opens_what_the_zone_does_not_let_in_and_keeps_what_was_recorded():
    task = task_named("firewall", "preflight.yml", "Plan the ports to open and close in firewalld")
    recorded = {"opened": [{"zone": "public", "port": "6443/tcp"}, {"zone": "internal", "port": "8472/udp"}]}
    variables = control_plane(
        firewall_firewalld_zone="public",
        firewall_zone_info={"stdout": PUBLIC + "  ports: 10250/tcp 6443/tcp\n"},
        firewall_service_infos={"results": [{"item": "ssh", "stdout": "ssh\n  ports: 22/tcp\n"}]},
        firewall_firewalld_recorded={"content": base64.b64encode(json.dumps(recorded).encode()).decode()},
    )
    plan = template(task["ansible.builtin.set_fact"]["firewall_firewalld_plan"], variables)
    ports = [port["port"] for port in variables["settings_node"]["filtered_ports"]]
    assert 10250 in ports  # the site's, in the zone: left alone
    assert "10250/tcp" not in plan["open"]
    assert "6443/tcp" in plan["open"]
    assert plan["close"] == [{"zone": "internal", "port": "8472/udp"}]
    assert {"zone": "public", "port": "8472/udp"} in plan["record"]["opened"]


def test_a_first_run_has_nothing_recorded():
    task = task_named("firewall", "preflight.yml", "Plan the ports to open and close in firewalld")
    variables = control_plane(firewall_firewalld_zone="public", firewall_zone_info={"stdout": PUBLIC},
                              firewall_service_infos={"results": []},
                              firewall_firewalld_recorded={"failed": True, "msg": "file not found"})
    plan = template(task["ansible.builtin.set_fact"]["firewall_firewalld_plan"], variables)
    assert plan["close"] == [] and "10250/tcp" not in plan["open"]


def test_an_active_ufw_that_rejects_the_ports_is_refused_with_the_fix():
    task = task_named("firewall", "preflight.yml", "Refuse an active ufw that rejects the node's ports")
    variables = {**control_plane(firewall_ufw_status={"rc": 0, "stdout": UFW, "stdout_lines": UFW.splitlines()}),
                 **task["vars"]}
    assert conditions_failed(task["when"], variables) == []
    message = " ".join(template(task["ansible.builtin.fail"]["msg"], variables).split())
    assert message.startswith("Host host1: ufw is active and rejects the node's port(s) ")
    assert "sudo ufw allow 10250/tcp" in message and "sudo ufw allow 8472/udp" in message
    assert "Fix:" in message


def test_an_inactive_or_absent_ufw_is_not_refused():
    task = task_named("firewall", "preflight.yml", "Refuse an active ufw that rejects the node's ports")
    for status in ({"rc": 0, "stdout": "Status: inactive", "stdout_lines": ["Status: inactive"]},
                   {"rc": 2, "stdout": "", "stdout_lines": []}):
        variables = {**control_plane(firewall_ufw_status=status), **task["vars"]}
        assert conditions_failed(task["when"], variables) != []


def test_reset_reads_an_absent_record_as_nothing():
    task = task_named("firewall", "reset.yml", "Close the ports this cluster opened in firewalld")
    variables = role_on_host("firewall", firewall_firewalld_recorded={"failed": True})
    assert template(task["loop"], variables) == []
    recorded = {"opened": [{"zone": "public", "port": "8472/udp"}]}
    variables = role_on_host("firewall", firewall_firewalld_recorded={
        "content": base64.b64encode(json.dumps(recorded).encode()).decode()})
    assert template(task["loop"], variables) == recorded["opened"]
