#!/usr/bin/env python3
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Times the whole-inventory check through Ansible itself, for inventories without real hosts.

For 100, 1,000 and 3,000 hosts (ansible_connection: local, each with its own
u7s_host_ip, the settings in group_vars as a fleet has them), runs the settings
role's plan entry point (the run_once u7s.cluster.cluster_plan action, which
reads every host's variables through hostvars; no task runs per host) with
ansible-playbook, and prints the wall time, the time per host and the growth per
tenfold hosts (about 10 is linear; quadratic would be 100). A baseline play
with one set_fact on every host shows what one task per host costs Ansible itself.
The per-host modules of the real check (getent, slurp) cost the same per host
on every inventory size and are left out: they need real hosts.
Usage: bench/preflight.py [SIZES...]   (with the project's venv on PATH)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = tuple(int(arg) for arg in sys.argv[1:]) or (100, 1000, 3000)
PLAY = """- name: {name}
  hosts: u7s_cluster
  gather_facts: false
  tasks:
{tasks}
"""
CHECK = """    - name: Check the whole inventory and plan every node
      ansible.builtin.import_role:
        name: u7s.cluster.settings
        tasks_from: plan
"""
BASELINE = """    - name: One set_fact per host, the same as the check's last task
      ansible.builtin.set_fact:
        bench_node: "{{ {'host': inventory_hostname} }}"
"""


def write_inventory(directory: str, size: int) -> str:
    path = os.path.join(directory, "hosts.yml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("u7s_cluster:\n  vars:\n    ansible_connection: local\n")
        handle.write("    ansible_python_interpreter: %s\n" % sys.executable)
        handle.write("    u7s_node_subnet_pool: 10.64.0.0/10\n    u7s_pod_cidr: 10.128.0.0/10\n")
        handle.write("    u7s_service_cidr: 10.96.0.0/12\n")
        handle.write("  children:\n    control_plane:\n      hosts:\n        node00000: {u7s_host_ip: 172.16.0.1}\n")
        handle.write("    workers:\n      hosts:\n")
        for index in range(1, size):
            handle.write("        node%05d: {u7s_host_ip: 172.16.%d.%d}\n" % (index, index // 250, index % 250 + 1))
    return path


def run(directory: str, inventory: str, name: str, tasks: str) -> float:
    playbook = os.path.join(directory, "%s.yml" % name)
    with open(playbook, "w", encoding="utf-8") as handle:
        handle.write(PLAY.format(name=name, tasks=tasks))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO_ROOT, ".build", "collections"),
               ANSIBLE_FORKS="20", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_NOCOLOR="1")
    started = time.perf_counter()
    result = subprocess.run(["ansible-playbook", "-i", inventory, playbook], env=env, check=False,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit("%s failed for %s" % (name, inventory))
    return elapsed


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for size in SIZES:
            inventory = write_inventory(directory, size)
            baseline = run(directory, inventory, "baseline", BASELINE)
            check = run(directory, inventory, "check", CHECK)
            rows.append((size, baseline, check))
    print("ansible-playbook, %s forks, ansible_connection local" % 20)
    print("%-8s %26s %26s" % ("hosts", "check (whole inventory)", "baseline (1 task per host)"))
    for size, baseline, check in rows:
        print("%-8s %10.1f s %8.1f ms/host %10.1f s %8.1f ms/host" % (
            "{:,}".format(size), check, 1000 * check / size, baseline, 1000 * baseline / size))
    for (small, _b1, c1), (large, _b2, c2) in zip(rows, rows[1:]):
        growth = (c2 / c1) / (large / small) * 10
        print("check growth %d -> %d hosts: x%.1f (x%.1f per tenfold hosts at this pace)" % (
            small, large, c2 / c1, growth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
