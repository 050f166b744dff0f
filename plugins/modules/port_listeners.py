#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: port_listeners
short_description: Tell who listens on given ports of the host
version_added: 0.1.0
description:
  - Reads, and never changes, the socket tables C(net/tcp), C(net/tcp6), C(net/udp) and C(net/udp6)
    below O(proc_path) and returns the sockets that hold one of the requested O(ports), with the user
    that owns each.
  - A TCP socket holds its port while it is in the C(LISTEN) state; a UDP socket while it is bound and
    not connected.
  - Several users of one host can each run a cluster, so a play can refuse a port that another user's
    cluster, or any other service, already holds. The rootless engine's port driver (rootlesskit) listens
    in the host's network namespace as the cluster user, so once a cluster runs, its published ports show
    up as held by the cluster user.
  - The tables describe the network namespace the module runs in, which is the host's own for an
    ordinary connection.
  - Files missing for one address family (a kernel without IPv6 has no C(tcp6) and C(udp6)) are skipped;
    the module fails when it can read neither table of a requested protocol.
options:
  ports:
    description:
      - The ports to report on.
    type: list
    elements: dict
    required: true
    suboptions:
      port:
        description: Port number, from 1 to 65535.
        type: int
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
  proc_path:
    description:
      - Where the proc file system to read is mounted.
    type: path
    default: /proc
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: linux
seealso:
  - module: u7s.cluster.cluster_plan
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Find who holds the ports the cluster will publish
  u7s.cluster.port_listeners:
    ports:
      - port: 6443
      - port: 2379
      - port: 10250
      - port: 8472
        protocol: udp
  register: held

- name: Refuse ports that another user (or service) holds
  ansible.builtin.assert:
    that: foreign | length == 0
    fail_msg: >-
      {% for item in foreign %}Port {{ item.port }}/{{ item.protocol }} on {{ item.address }} is held by
      {{ item.user or 'uid ' ~ item.uid }}. {% endfor %}Fix: choose other ports for this cluster.
    quiet: true
  vars:
    # The cluster user's own listeners are its rootlesskit holding the ports it publishes.
    foreign: "{{ held.listeners | rejectattr('user', 'equalto', 'u7s') | list }}"
"""

RETURN = r"""
listeners:
  description:
    - The sockets that hold a requested port, one per port, protocol, address and owner,
      sorted by port, protocol, address and uid. Empty when the ports are free.
  returned: success
  type: list
  elements: dict
  contains:
    port:
      description: The port number.
      type: int
      sample: 6443
    protocol:
      description: V(tcp) or V(udp).
      type: str
      sample: tcp
    address:
      description:
        - The local address the socket is bound to; V(0.0.0.0) and V(::) mean every address
          of the family. IPv4-mapped IPv6 addresses read C(::ffff:a.b.c.d).
      type: str
      sample: "0.0.0.0"
    uid:
      description: The user ID that owns the socket.
      type: int
      sample: 1001
    user:
      description: The login name of RV(listeners[].uid), V(null) when the passwd database has none.
      type: str
      sample: u7s
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.u7s.cluster.plugins.module_utils.port_listeners import PROTOCOLS, find_listeners


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=dict(
            ports=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    port=dict(type="int", required=True),
                    protocol=dict(type="str", choices=list(PROTOCOLS), default="tcp"),
                ),
            ),
            proc_path=dict(type="path", default="/proc"),
        ),
        supports_check_mode=True,
    )
    wanted = [(item["port"], item["protocol"]) for item in module.params["ports"]]
    invalid = sorted({port for port, _protocol in wanted if not 1 <= port <= 65535})
    if invalid:
        module.fail_json(msg="ports must be from 1 to 65535, got %s." % ", ".join(str(port) for port in invalid))

    proc_path = module.params["proc_path"]
    report = find_listeners(proc_path, wanted)
    for protocol in sorted({protocol for _port, protocol in wanted}):
        names = (protocol, protocol + "6")
        if all(name in report.unreadable for name in names):
            paths = [os.path.join(proc_path, "net", name) for name in names]
            module.fail_json(msg="Cannot read %s or %s, so the %s listeners are unknown." % (paths[0], paths[1], protocol))
    module.exit_json(changed=False, listeners=report.listeners)


if __name__ == "__main__":
    main()
