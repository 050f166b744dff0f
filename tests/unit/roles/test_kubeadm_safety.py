# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The kubeadm role never resets a node that holds a cluster, and never chmods a directory it did not create.

The node probe (a shell script) runs for real with sh, over a temporary tree that stands for the node's
/etc/kubernetes and /var/lib/etcd; the task files are checked for where the reset can run; the kubeconfig
directory tasks run for real with ansible-playbook on this machine.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rendering import REPO, evaluate, load_tasks, role_on_host, task_named, template

from ansible_collections.u7s.cluster.plugins.module_utils.kubeadm_state import (
    ADMIN_CONF,
    CLUSTER_DATA,
    INIT_MARKER,
    JOIN_MARKER,
    KUBELET_CONF,
    PROBE_KEYS,
)


def kubeadm_variables(host: str = "host1", **facts) -> dict:
    return role_on_host("kubeadm", None, host, **facts)


# --- the probe, run with sh ---------------------------------------------------------------------

def probe_script() -> str:
    return kubeadm_variables()["kubeadm_node_probe"]


def test_the_probe_looks_at_every_path_the_decisions_name():
    script = probe_script()
    for path in [INIT_MARKER, JOIN_MARKER, KUBELET_CONF, ADMIN_CONF] + [path for _key, path, _what in CLUSTER_DATA]:
        assert path in script, path


def run_probe(root: Path, api_answers: bool) -> dict:
    """The probe over ROOT (for /etc/kubernetes and /var/lib/etcd), with a kubectl that answers or not."""
    script = probe_script().replace("/etc/kubernetes", str(root / "etc/kubernetes")).replace(
        "/var/lib/etcd", str(root / "var/lib/etcd"))
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    kubectl = bin_dir / "kubectl"
    kubectl.write_text("#!/bin/sh\necho \"$@\" >> %s/kubectl.log\nexit %d\n" % (root, 0 if api_answers else 1))
    kubectl.chmod(0o755)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": "%s:%s" % (bin_dir, os.environ["PATH"])}).stdout
    return yaml.safe_load(out)


def test_the_probe_of_a_fresh_node_reports_nothing(tmp_path):
    assert run_probe(tmp_path, api_answers=True) == {key: False for key in PROBE_KEYS}
    assert not (tmp_path / "kubectl.log").exists(), "the API was asked without an admin.conf"


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def test_the_probe_of_a_control_plane_without_its_marker(tmp_path):
    for _key, path, _what in CLUSTER_DATA:
        if path.endswith("/member"):
            touch(tmp_path / path.lstrip("/") / "snap" / "db")
        else:
            touch(tmp_path / path.lstrip("/"))
    touch(tmp_path / KUBELET_CONF.lstrip("/"))
    probe = run_probe(tmp_path, api_answers=True)
    assert probe == {**{key: True for key in PROBE_KEYS}, "init_marker": False, "join_marker": False}
    (call,) = (tmp_path / "kubectl.log").read_text().splitlines()
    assert call == "--kubeconfig %s/etc/kubernetes/admin.conf --request-timeout=10s get --raw /readyz" % tmp_path
    assert run_probe(tmp_path, api_answers=False)["api_ready"] is False


def test_the_probe_counts_an_empty_etcd_member_directory_as_no_data(tmp_path):
    (tmp_path / "var/lib/etcd/member").mkdir(parents=True)
    assert run_probe(tmp_path, api_answers=False)["etcd_member"] is False


def test_the_probe_asks_no_api_once_the_init_is_marked(tmp_path):
    for path in (INIT_MARKER, ADMIN_CONF):
        touch(tmp_path / path.lstrip("/"))
    probe = run_probe(tmp_path, api_answers=True)
    assert probe["init_marker"] is True and probe["api_ready"] is False
    assert not (tmp_path / "kubectl.log").exists()


# --- the task files: where a reset can run ------------------------------------------------------

def exec_argvs(tasks: list) -> list:
    return [task["vars"]["kubeadm_exec_argv"] for task in tasks
            if task.get("ansible.builtin.include_tasks") == "exec.yml"]


@pytest.mark.parametrize(("file", "fact", "action"), [
    ("init.yml", "kubeadm_init_decided", "init"),
    ("join.yml", "kubeadm_join_decided", "join"),
])
def test_kubeadm_reset_runs_only_where_the_decision_found_no_cluster(file, fact, action):
    tasks = load_tasks("kubeadm", file)
    assert [argv for argv in exec_argvs(tasks) if "reset" in argv] == []
    blocks = [task for task in tasks if "block" in task and [a for a in exec_argvs(task["block"]) if "reset" in a]]
    (block,) = blocks
    assert block["when"] == "%s.action == '%s'" % (fact, action)
    # The probe comes first, read-only.
    assert exec_argvs(tasks)[0] == ["sh", "-c", "{{ kubeadm_node_probe }}"]
    assert tasks[0]["vars"]["kubeadm_exec_changes"] is False


def test_init_refuses_before_it_changes_anything():
    names = [task["name"] for task in load_tasks("kubeadm", "init.yml")]
    refusal = names.index("Refuse to reset a node that holds a control plane whose API server does not answer")
    assert refusal < names.index("Write the kubeadm configuration the node reads")
    task = task_named("kubeadm", "init.yml", "Refuse to reset a node that holds a control plane whose API server does not answer")
    assert task["when"] == "kubeadm_init_decided.action == 'refuse'"


@pytest.mark.parametrize(("file", "marker"), [("init.yml", INIT_MARKER), ("join.yml", JOIN_MARKER)])
def test_an_adoption_writes_the_marker_only(file, marker):
    (block,) = [task for task in load_tasks("kubeadm", file) if task.get("name", "").startswith("Adopt")]
    assert exec_argvs(block["block"]) == [["touch", marker]]
    assert block["block"][0]["ansible.builtin.debug"]["msg"].startswith("{{ kubeadm_")


def test_init_decides_from_the_probe_output_with_the_nodes_context():
    task = task_named("kubeadm", "init.yml", "Decide what kubeadm init may do here")
    stdout = "\n".join("%s: %s" % (key, str(key in ("etcd_member", "ca_key")).lower()) for key in PROBE_KEYS)
    decided = template(task["ansible.builtin.set_fact"]["kubeadm_init_decided"],
                       kubeadm_variables(kubeadm_exec={"stdout": stdout, "rc": 0}))
    assert decided["action"] == "refuse"
    assert decided["message"].startswith("host1: kubeadm init was not marked complete in the node container u7s-node")
    assert "`docker exec u7s-node kubeadm reset --force`" in decided["message"]


@pytest.mark.parametrize(("node_info", "kubelet_conf", "action"), [
    ({"skipped": True, "changed": False}, False, "join"),
    ({"resources": [], "changed": False}, True, "join"),
    ({"resources": [{"metadata": {"name": "u7s-host2"}}], "changed": False}, True, "adopt"),
], ids=["not-asked", "unknown-node", "known-node"])
def test_join_asks_the_api_about_its_own_node_and_decides(node_info, kubelet_conf, action):
    probe = {key: False for key in PROBE_KEYS} | {"kubelet_conf": kubelet_conf}
    variables = kubeadm_variables("host2", kubeadm_join_probe=probe, kubeadm_node_info=node_info)
    ask = task_named("kubeadm", "join.yml",
                     "Ask the API whether it knows this node (a join that left its kubelet.conf but no marker)")
    assert template(ask["kubernetes.core.k8s_info"]["name"], variables) == "u7s-host2"
    assert evaluate(ask["when"], variables) is kubelet_conf
    task = task_named("kubeadm", "join.yml", "Decide what kubeadm join may do here")
    assert template(task["ansible.builtin.set_fact"]["kubeadm_join_decided"], variables)["action"] == action


# --- directories: created when missing, never chmod'ed -------------------------------------------

def test_the_users_bin_directory_is_created_only_when_missing():
    look = task_named("kubeadm", "kubeconfig.yml", "Look for the cluster user's bin directory")
    create = task_named("kubeadm", "kubeconfig.yml", "Create the cluster user's bin directory (only what is missing)")
    assert look["ansible.builtin.stat"]["path"] == create["ansible.builtin.file"]["path"]
    variables = kubeadm_variables()
    assert evaluate(create["when"], {**variables, "kubeadm_user_bin_dir": {"stat": {"exists": True}}}) is False
    assert evaluate(create["when"], {**variables, "kubeadm_user_bin_dir": {"stat": {"exists": False}}}) is True


KUBECONFIG_DIR_TASKS = ["Look for the controller's directory for it",
                        "Refuse a kubeconfig directory that is no directory",
                        "Create the controller's directory for it (only what is missing, 0700)"]


def run_kubeconfig_dir_tasks(tmp_path: Path, kubeconfigs: list[str]) -> subprocess.CompletedProcess:
    """The role's own directory tasks, one play per kubeconfig path, on this machine."""
    by_name = {task["name"]: task for task in yaml.safe_load((REPO / "roles/kubeadm/tasks/kubeconfig.yml").read_text())}
    tasks = [by_name[name] for name in KUBECONFIG_DIR_TASKS]
    plays = [{"name": "kubeconfig %s" % path, "hosts": "all", "gather_facts": False,
              "vars": {"u7s_kubeconfig": path}, "tasks": tasks} for path in kubeconfigs]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump(plays))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0"}
    env.pop("ANSIBLE_CONFIG", None)
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable, str(playbook)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_kubeconfig_directories_existing_ones_keep_their_mode_missing_ones_are_0700(tmp_path):
    """Issue 12 finding 4: a kubeconfig in a shared temporary directory turned it from 1777 into 0700."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    parent = tmp_path / "parent"
    parent.mkdir()
    parent.chmod(0o755)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = run_kubeconfig_dir_tasks(tmp_path, [
        str(shared / "kubeconfig"),
        str(parent / "a" / "b" / "kubeconfig"),
        str(not_a_dir / "kubeconfig"),  # last: it fails the host
    ])
    assert mode(shared) == 0o1777, result.stdout
    assert mode(parent) == 0o755
    assert mode(parent / "a") == 0o700 and mode(parent / "a" / "b") == 0o700, result.stdout
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("localhost: u7s_kubeconfig (%s/kubeconfig) lies in %s, which exists on the controller but is not a "
            "directory. Fix: set u7s_kubeconfig to a path in a directory." % (not_a_dir, not_a_dir)) in result.stdout
