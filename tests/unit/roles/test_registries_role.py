# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The registries role: where it writes, what it hides, and where the playbooks run it."""

from __future__ import annotations

from ansible.parsing.dataloader import DataLoader

from rendering import REPO, all_tasks, evaluate, role_on_host, task_named, template, trusted

SITE = {"docker.io": {"mirrors": [{"url": "https://m.example", "username": "u", "password": "p"}]}}
WRITE = "Write the registry configuration as the cluster user"


def registries_variables(inventory: dict | None = None) -> dict:
    """What the role's block tasks see on host1, with the block's variables."""
    block = task_named("registries", "main.yml", WRITE)
    return {**role_on_host("registries", inventory), **block["vars"]}


def test_the_files_land_where_the_node_mounts_its_configuration():
    variables = registries_variables({"u7s_registries": SITE})
    node_facts = variables["node_facts"]
    assert evaluate("registries_dir", variables) == node_facts["config_dir"] + "/registries"
    assert evaluate("registries_mount", variables) == "/u7s/registries" == node_facts["config_mount"] + "/registries"
    files = evaluate("registries_files", variables)
    assert [item["path"] for item in files] == ["docker.io/hosts.toml"]
    assert evaluate("registries_dirs", variables) == ["docker.io"]


def test_as_the_cluster_user():
    block = task_named("registries", "main.yml", WRITE)
    assert block["become"] is True and block["become_user"] == "{{ rootless_runtime_session.user }}"


def test_tasks_that_carry_secrets_log_nothing():
    """Credentials are in hosts.toml content, keys in client key files: those tasks are no_log; the others take
    only what is not secret."""
    for task in all_tasks("registries", "main.yml"):
        loop = str(task.get("loop", ""))
        if not loop.startswith("{{ registries_files"):
            continue
        if "selectattr('secret')" in loop:
            assert task.get("no_log") is True, task["name"]
        else:
            assert "rejectattr('secret')" in loop, task["name"]


def test_only_the_secret_files_are_hidden():
    variables = registries_variables({"u7s_registries": {
        **SITE, "quay.io": {"mirrors": ["https://q.example"]},
        "r.example": {"ca_file": "/c/ca.pem", "client_cert_file": "/c/c.pem", "client_key_file": "/c/k.pem"}}})
    hidden = {}
    for task in all_tasks("registries", "main.yml"):
        if str(task.get("loop", "")).startswith("{{ registries_files"):
            for item in template(task["loop"], variables):
                hidden[item["path"]] = task.get("no_log") is True
    assert hidden == {"docker.io/hosts.toml": True, "quay.io/hosts.toml": False, "r.example/hosts.toml": False,
                      "r.example/registry-ca.pem": False, "r.example/registry-client.pem": False,
                      "r.example/registry-client-key.pem": True}


def test_hosts_yml_writes_them_before_the_node_starts():
    plays = trusted(DataLoader().load_from_file(str(REPO / "playbooks/hosts.yml")))
    roles = [entry["role"] for play in plays for entry in play.get("roles", [])]
    assert roles.index("u7s.cluster.registries") == roles.index("u7s.cluster.node") - 1


def test_the_node_reset_removes_them_with_the_nodes_configuration():
    """reset.yml does not call the role's reset: the node's reset removes a directory that holds them."""
    variables = registries_variables({"u7s_registries": SITE})
    removed = template(task_named("node", "reset.yml", "Remove the recorded node state and the node's configuration "
                                  "directory")["loop"], variables)
    directory = evaluate("registries_dir", variables)
    assert any(directory.startswith(path + "/") for path in removed), (directory, removed)
    for playbook in ("reset.yml", "remove-node.yml"):
        assert "u7s.cluster.registries" not in (REPO / "playbooks" / playbook).read_text()


def test_the_playbook_of_its_own_runs_only_it():
    (play,) = trusted(DataLoader().load_from_file(str(REPO / "playbooks/registries.yml")))
    assert play["hosts"] == "u7s_cluster" and play["gather_facts"] is True and play["any_errors_fatal"] is True
    assert play["roles"] == [{"role": "u7s.cluster.registries"}]
