#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_plan
short_description: Check the whole inventory and plan every host's Usernetes node
version_added: 0.2.0
description:
  - Reads every setting of M(u7s.cluster.settings) (see C(ansible-doc -t role u7s.cluster.settings)) for every host
    of the cluster group, from the inventory with the role's defaults, and checks them together, before any host
    changes; it fails with every problem at once, each naming the host(s), the variable and a fix that leaves
    working nodes alone.
  - "Checks: the cluster and control-plane groups; renamed variables of earlier releases; each setting's type;
    settings that must be the same on every host; the Kubernetes version, DNS domain and API endpoint; the pod and
    service networks (IPv4, sizes kubeadm accepts, apart from each other and from the hosts' addresses); user names;
    unique Kubernetes node names; host addresses (one of the host's, where facts were gathered); extra ports;
    ports that collide on a host or an address; node subnets (planned without collisions, an existing node's kept);
    C(u7s_bypass4netns) true on a host without nerdctl or with a kernel older than 5.9 (from its facts)."
  - Returns the plan every role reads; the cost is linear in the number of hosts (n log n for the subnet plan).
  - An action that runs on the controller, once (C(run_once)), in a role that depends on u7s.cluster.settings;
    a host's recorded node subnet is read from its C(settings_node_state) variable (a C(slurp) of its node state file).
options:
  purpose:
    description:
      - V(bring-up) checks the inventory against the nodes the hosts already run (their recorded subnets are kept,
        a setting changed under a running node is refused).
      - V(upgrade) (C(playbooks/upgrade.yml)) lets running nodes be at an older Kubernetes than
        C(u7s_kubernetes_version), one minor version below at most; a downgrade or a skipped minor is refused. Without
        it a running node at another version is refused, naming the upgrade playbook.
      - V(reset) (C(playbooks/reset.yml), C(playbooks/remove-node.yml)) ignores what the hosts run, so a half-broken
        cluster, a changed setting or hosts outside C(--limit) do not refuse the reset; the inventory itself is
        checked as ever, and the subnets it plans are those of new nodes.
    type: str
    choices: [bring-up, upgrade, reset]
    default: bring-up
    version_added: 0.2.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Only reads the inventory.
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Check the whole inventory and plan every node
  u7s.cluster.cluster_plan:
  run_once: true
  register: settings_plan
"""

RETURN = r"""
problems:
  description: Every problem found; empty on success.
  returned: always
  type: list
  elements: str
  sample: ["Hosts node3, node4 would all be the Kubernetes node u7s-node3, but node names must be unique. Fix: ..."]
settings:
  description: The cluster-wide settings, as every host has them (types applied); empty when a setting has the wrong type.
  returned: always
  type: dict
  sample: {"u7s_port_apiserver": 6443, "u7s_pod_cidr": "10.244.0.0/16"}
control_plane:
  description: The inventory hostname of the host that runs C(kubeadm init).
  returned: success
  type: str
  sample: node1
host_addresses:
  description: Every known host address of the cluster, sorted; the firewall lets these reach the node's ports.
  returned: success
  type: list
  elements: str
  sample: ["192.0.2.10", "192.0.2.11"]
apiserver_sources:
  description: C(u7s_firewall_apiserver_sources) as networks.
  returned: success
  type: list
  elements: str
  sample: ["198.51.100.0/24"]
api_endpoint:
  description:
    - C(host:port) nodes and the controller reach the API server by.
    - V(null) when the control-plane host is outside the run (C(--limit)) without C(u7s_host_ip) and no endpoint is set.
  returned: success
  type: str
  sample: 192.0.2.10:6443
recorded_settings:
  description: The settings a running node keeps, which the node role records with it; a later change is refused
    (the Kubernetes version is the upgrade's to change).
  returned: success
  type: dict
  sample: {"u7s_port_apiserver": 6443, "u7s_cgroup_driver": "systemd"}
hosts:
  description: Every host's node, by inventory hostname.
  returned: success
  type: dict
  contains:
    node_name:
      description: The Kubernetes node name and container hostname.
      type: str
    host_address:
      description: The address other hosts reach the host by.
      type: str
    subnet:
      description: The node container's network.
      type: str
    gateway:
      description: The engine's bridge address on it.
      type: str
    node_ip:
      description: The node container's address.
      type: str
    subnet_source:
      description: C(override) (u7s_node_subnet), C(recorded) (kept from an existing node) or C(allocated).
      type: str
    published_ports:
      description:
        - The ports the node publishes, each C({port, protocol}) - the kubelet's and VXLAN's on every host, the API
          server's on the control plane, etcd's nowhere, and the host's C(u7s_extra_ports).
      type: list
      elements: dict
    publish_address:
      description: The host address the ports are bound to (C(u7s_publish_address), else the host's address).
      type: str
    publish_specs:
      description: The same ports as the engines take them, C(<address>:<port>:<port>/<protocol>).
      type: list
      elements: str
    filtered_ports:
      description:
        - The node's own ports the firewall filters, each C({port, protocol, sources}) with sources C(cluster)
          (the inventory's hosts) or C(apiserver) (those, the controller and C(u7s_firewall_apiserver_sources)).
      type: list
      elements: dict
    running_version:
      description: The Kubernetes version the host's node was recorded with; V(null) for a host without a node.
      type: str
    port_names:
      description: The setting behind each published port, by C(<port>/<protocol>).
      type: dict
    user:
      description: The cluster user on the host.
      type: str
    engine:
      description: The rootless engine on the host.
      type: str
    allow_cgroup_v1:
      description: Whether the host may run cgroup v1.
      type: bool
    bypass4netns:
      description:
        - Whether the node runs with bypass4netns (C(u7s_bypass4netns); V(auto) is true with nerdctl on a kernel the
          host's facts report as Linux 5.9 or later).
      type: bool
    bypass4netns_ignore_subnets:
      description:
        - The networks bypass4netns leaves to the node's own network namespace - loopback, the pod and service
          networks, the node subnet pool and any node subnet outside it - sorted and merged; the same on every host.
      type: list
      elements: str
  sample: {"node1": {"node_name": "u7s-node1", "host_address": "192.0.2.10", "subnet": "10.100.0.0/24",
           "gateway": "10.100.0.1", "node_ip": "10.100.0.2", "subnet_source": "allocated",
           "published_ports": [{"port": 6443, "protocol": "tcp"}], "port_names": {"6443/tcp": "u7s_port_apiserver"},
           "user": "u7s", "engine": "docker", "allow_cgroup_v1": false, "bypass4netns": false,
           "bypass4netns_ignore_subnets": ["0.0.0.0/32", "10.96.0.0/16", "10.100.0.0/16", "10.244.0.0/16", "127.0.0.0/8",
                                           "::/127"]}}
"""
