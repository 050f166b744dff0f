# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The fleet registry's wiring: the registry host's role, the hosts' trust and pull, the nodes' containerd."""

from __future__ import annotations

import pytest
import yaml
from rendering import REPO, all_tasks, evaluate, play_facts, render_role_template, role_on_host, task_named

REGISTRY = {
    "host": "reg1", "address": "192.0.2.5", "port": 5000, "endpoint": "192.0.2.5:5000", "user": "u7s-registry",
    "ca_file": "/srv/inventory/artifacts/registry-ca.pem", "ca_key_file": "/srv/inventory/artifacts/registry-ca-key.pem",
    "generate_ca": True, "in_cluster": False,
    "subject_alt_names": ["IP:192.0.2.5", "DNS:localhost", "IP:127.0.0.1"],
    "node_image": "192.0.2.5:5000/u7s/node:v1.36.4",
}


def with_registry(role: str, inventory: dict | None = None, registry: str = "planned", **facts) -> dict:
    """ROLE's variables on host1 when the settings check planned REGISTRY ("planned"; "none": no registry)."""
    plan = dict(play_facts(inventory)["settings_plan"], registry=REGISTRY if registry == "planned" else None)
    return role_on_host(role, inventory, settings_plan=plan, **facts)


def test_the_nodes_containerd_gets_the_fleet_registry_with_its_ca():
    site = {"docker.io": {"mirrors": ["https://m.example"]}}
    variables = with_registry("registries", {"u7s_registries": site})
    assert evaluate("registries_value", variables) == {**site, "192.0.2.5:5000": {"ca_file": REGISTRY["ca_file"]}}
    assert evaluate("registries_value", with_registry("registries", {"u7s_registries": site}, "none")) == site
    task = task_named("registries", "main.yml", "Write the registry configuration as the cluster user")
    assert task["vars"]["registries_files"].startswith("{{ registries_value |")


def test_pull_takes_the_node_image_from_the_fleet_registry_unless_a_reference_is_given():
    variables = with_registry("node_image", {"node_image_source": "pull"})
    assert evaluate("node_image_pull_source", variables) == "192.0.2.5:5000/u7s/node:v1.36.4"
    assert evaluate("node_image_pull_from_fleet", variables) is True
    given = with_registry("node_image", {"node_image_source": "pull", "node_image_pull_ref": "ghcr.io/x/node:1"})
    assert evaluate("node_image_pull_source", given) == "ghcr.io/x/node:1"
    assert evaluate("node_image_pull_from_fleet", given) is False
    none = with_registry("node_image", {"node_image_source": "pull"}, "none")
    assert evaluate("node_image_pull_source", none) == ""


@pytest.mark.parametrize("engine", ["docker", "podman", "nerdctl"])
def test_the_pull_tasks_pull_the_source_and_tag_it_as_the_node_image(engine):
    text = (REPO / "roles/node_image/tasks" / ("pull-%s.yml" % engine)).read_text()
    assert "node_image_pull_source" in text and "node_image_pull_ref" not in text
    trust = task_named("node_image", "pull.yml", "Trust the fleet registry's CA in the user's engine")
    assert trust["ansible.builtin.include_role"] == {"name": "u7s.cluster.fleet_registry", "tasks_from": "trust"}


@pytest.mark.parametrize(("engine", "directory"), [
    ("docker", "/home/u7s/.config/docker/certs.d/192.0.2.5:5000"),
    ("podman", "/home/u7s/.config/containers/certs.d/192.0.2.5:5000"),
    ("nerdctl", "/home/u7s/.config/containerd/certs.d/192.0.2.5:5000"),
])
def test_the_engine_trusts_the_ca_where_it_reads_it(engine, directory):
    session = {"home": "/home/u7s", "user": "u7s", "engine": engine, "exists": True}
    variables = with_registry("fleet_registry", rootless_runtime_session=session)
    assert evaluate("fleet_registry_trust_dir", variables) == directory
    block = task_named("fleet_registry", "trust.yml", "Trust the fleet registry's CA as the cluster user")
    assert block["become_user"] == "{{ rootless_runtime_session.user }}"


def test_the_firewall_lets_in_the_inventorys_hosts_and_the_controller_only():
    facts = {"env": {"SSH_CLIENT": "198.51.100.7 50000 22"}}
    variables = with_registry("fleet_registry", ansible_facts=facts)
    ruleset = evaluate("fleet_registry_ruleset", variables)
    assert "elements = { 192.0.2.11/32, 192.0.2.12/32, 198.51.100.7/32 }" in ruleset
    assert "tcp dport 5000 ip saddr @cluster_v4 accept" in ruleset
    assert "tcp dport 5000 counter drop" in ruleset
    assert evaluate("fleet_registry_firewall_table", variables) != evaluate("'u7s' | u7s.cluster.nft_table", variables)


def test_the_registry_config_and_unit():
    variables = with_registry("fleet_registry")
    config = yaml.safe_load(render_role_template("fleet_registry", "config.yml.j2", variables))
    assert config["http"]["addr"] == ":5000"
    assert config["http"]["tls"] == {"certificate": "/var/lib/u7s-registry/tls/server.pem",
                                     "key": "/var/lib/u7s-registry/tls/server-key.pem"}
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/u7s-registry/storage"
    assert "auth" not in config
    unit = render_role_template("fleet_registry", "registry.service.j2", variables)
    assert "User=u7s-registry\n" in unit and "NoNewPrivileges=yes" in unit and "CapabilityBoundingSet=\n" in unit
    assert "ReadWritePaths=/var/lib/u7s-registry/storage\n" in unit


def test_the_server_key_never_leaves_the_registry_host():
    """Only the CSR goes to the controller; the signing is delegated there, the key is generated on the host."""
    key = task_named("fleet_registry", "certificate.yml", "Generate the server key")
    assert "delegate_to" not in key and key["community.crypto.openssl_privatekey"]["mode"] == "0600"
    sign = task_named("fleet_registry", "certificate.yml", "Sign it with the CA on the controller")
    assert sign["delegate_to"] == "localhost"
    assert "privatekey_path" not in sign["community.crypto.x509_certificate_pipe"]
    assert sign["community.crypto.x509_certificate_pipe"]["provider"] == "ownca"


def test_the_ca_is_made_on_the_controller_once():
    block = task_named("fleet_registry", "ca.yml", "Generate the fleet registry's CA on the controller")
    assert block["delegate_to"] == "localhost" and block["run_once"] is True
    assert block["when"] == "fleet_registry_plan.generate_ca"


def test_the_package_unit_is_masked_before_the_package_is_installed():
    names = [task["name"] for task in all_tasks("fleet_registry", "main.yml")]
    assert names.index("Mask the package's own unit") < names.index(
        "Install the registry, skopeo (pushes) and what the certificate tasks need")


def test_commands_report_honestly():
    for file in ("main.yml", "firewall.yml", "load-archive.yml", "certificate.yml", "ca.yml"):
        for task in all_tasks("fleet_registry", file):
            if "ansible.builtin.command" in task:
                assert "changed_when" in task, (file, task["name"])
            if "community.crypto.openssl_csr_pipe" in task:
                assert task["changed_when"] is False, (file, task["name"])


def load_playbook(name: str) -> list:
    return yaml.safe_load((REPO / "playbooks" / name).read_text())


@pytest.mark.parametrize("name", ["registry.yml", "registry-load.yml", "registry-reset.yml"])
def test_the_registry_playbooks_check_the_inventory_first(name):
    plays = load_playbook(name)
    assert plays[0]["hosts"] == "u7s_cluster:u7s_registry" and plays[0]["any_errors_fatal"] is True
    assert plays[0]["tasks"][0]["ansible.builtin.import_role"] == {"name": "u7s.cluster.settings",
                                                                   "tasks_from": "registry_check"}
    assert plays[1]["hosts"] == "u7s_registry"


def test_the_load_pushes_the_node_image_the_offline_and_the_site_images():
    play = load_playbook("registry-load.yml")[1]
    push = [task for task in play["tasks"] if task["name"] == "Push the images the registry lacks"][0]
    assert push["vars"]["fleet_registry_load_images"] == (
        "{{ registry_load_node + registry_load_offline + registry_load_site_images }}")
    assert push["vars"]["registry_load_node"][0]["file"] == "{{ node_image_shipped_path }}"
