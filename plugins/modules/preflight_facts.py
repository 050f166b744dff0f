#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: preflight_facts
short_description: Gather the host facts that decide whether rootless Kubernetes can run
version_added: 0.1.0
description:
  - Reads, and never changes, what the C(u7s.cluster.preflight_problems) filter decides on
    for the cluster user O(user) - user namespace sysctls and C(net.ipv4.ip_unprivileged_port_start),
    the cgroup layout and controllers (and who owns the cgroup v1 hierarchies), the user's passwd entry,
    the C(/etc/subuid) and C(/etc/subgid) entries, the host's users and groups and the ID ranges of
    C(/etc/login.defs), and the AppArmor profiles that already attach to O(apparmor_binaries).
  - Returns them as the C(u7s_preflight) fact and as RV(facts). Merge in the distribution facts
    (C(distribution), C(distribution_major_version), C(distribution_version), C(os_family)) before
    passing them to the filter.
  - The cgroup version is C(v2) when C(/sys/fs/cgroup/cgroup.controllers) exists and no controller is
    mounted as a cgroup v1 hierarchy, C(hybrid) when a cgroup v2 hierarchy and v1 controllers are both
    mounted, and C(v1) otherwise.
options:
  user:
    description:
      - Login name of the user that is to run the rootless cluster.
    type: str
    required: true
  apparmor_binaries:
    description:
      - Binaries to look for AppArmor profiles of in C(/etc/apparmor.d) (the distribution's, or the site's),
        returned as RV(facts.apparmor_profiles).
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Gather the preflight facts
  u7s.cluster.preflight_facts:
    user: u7s

- name: Refuse hosts that cannot run rootless Kubernetes
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' ') }}"
    quiet: true
  vars:
    problems: >-
      {{ ansible_facts | combine(ansible_facts.u7s_preflight)
         | u7s.cluster.preflight_problems({'create_user': true}) }}
"""

RETURN = r"""
facts:
  description: The gathered facts, also set as C(ansible_facts.u7s_preflight).
  returned: success
  type: dict
  contains:
    kernel_release:
      description: Release of the running kernel (C(uname -r)).
      type: str
      returned: success
      sample: 6.12.48+deb13-amd64
    sysctl:
      description:
        - C(user.max_user_namespaces), C(kernel.unprivileged_userns_clone),
          C(kernel.apparmor_restrict_unprivileged_userns) and C(net.ipv4.ip_unprivileged_port_start),
          each an integer or V(null) where the kernel lacks it.
      type: dict
      returned: success
      sample: {"user.max_user_namespaces": 63368, "kernel.unprivileged_userns_clone": 1,
               "kernel.apparmor_restrict_unprivileged_userns": null, "net.ipv4.ip_unprivileged_port_start": 1024}
    cgroup:
      description: The cgroup layout.
      type: dict
      returned: success
      contains:
        version:
          description: V(v2), V(hybrid) or V(v1).
          type: str
          returned: success
          sample: v2
        controllers:
          description: Controllers of the cgroup v2 root (C(cgroup.controllers)), sorted.
          type: list
          elements: str
          returned: success
          sample: [cpu, cpuset, io, memory, pids]
        v1_controllers:
          description: Controllers mounted as cgroup v1 hierarchies, sorted.
          type: list
          elements: str
          returned: success
          sample: []
        mountpoint:
          description: Where the cgroup v2 hierarchy is mounted, V(null) without one.
          type: str
          returned: success
          sample: /sys/fs/cgroup
        v1_hierarchies:
          description:
            - The cgroup v1 hierarchies that bind controllers, each with its mount point, controllers, and the
              uid and login name (V(null) if none) of its owner. One owned by another account than root was handed
              to that account (cgroup v1 has no delegation).
          type: list
          elements: dict
          returned: success
          sample: [{"mountpoint": "/sys/fs/cgroup/memory", "controllers": ["memory"], "uid": 1001, "owner": "u7s"}]
        v1_chown_unit:
          description:
            - The uid and user that C(/etc/systemd/system/u7s-cgroup-v1-chown.service) hands the cgroup v1
              hierarchies to at boot; V(null) without that unit.
          type: dict
          returned: success
          sample: {"path": "/etc/systemd/system/u7s-cgroup-v1-chown.service", "uid": 1001, "user": "u7s"}
    user:
      description: The passwd entry of O(user); C(uid), C(gid), C(home) and C(shell) are V(null) when it does not exist.
      type: dict
      returned: success
      sample: {"name": "u7s", "exists": true, "uid": 1001, "gid": 1001, "home": "/home/u7s", "shell": "/bin/bash"}
    subuid:
      description: Entries of C(/etc/subuid) (all users), with their line numbers; empty when the file is missing.
      type: list
      elements: dict
      returned: success
      sample: [{"owner": "u7s", "start": 100000, "count": 65536, "line": 1}]
    subgid:
      description: Entries of C(/etc/subgid), like RV(facts.subuid).
      type: list
      elements: dict
      returned: success
      sample: [{"owner": "u7s", "start": 100000, "count": 65536, "line": 1}]
    accounts:
      description:
        - The host's users (C(users), by uid) and groups (C(groups), by gid) as C(name) and C(id), through NSS
          (C(getpwall), C(getgrall)). Directory accounts (LDAP, SSSD) are only there where NSS enumerates them.
      type: dict
      returned: success
      sample: {"users": [{"name": "root", "id": 0}, {"name": "u7s", "id": 1001}], "groups": [{"name": "root", "id": 0}]}
    login_defs:
      description:
        - C(UID_MIN), C(UID_MAX), C(SYS_UID_MAX), C(SUB_UID_MIN), C(SUB_UID_MAX), C(SUB_UID_COUNT) and their
          C(GID) counterparts from C(/etc/login.defs), shadow-utils' defaults where it does not set them.
      type: dict
      returned: success
      sample: {"UID_MIN": 1000, "SYS_UID_MAX": 999, "SUB_UID_MIN": 100000, "GID_MIN": 1000}
    apparmor_profiles:
      description:
        - Profiles in C(/etc/apparmor.d) that attach to one of O(apparmor_binaries), leaving out the
          collection's own C(/etc/apparmor.d/u7s-userns) and disabled profiles.
      type: list
      elements: dict
      returned: success
      sample: [{"binary": "/usr/bin/rootlesskit", "profile": "rootlesskit", "file": "/etc/apparmor.d/rootlesskit"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.u7s.cluster.plugins.module_utils.host_facts import gather_preflight_facts


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=dict(
            user=dict(type="str", required=True),
            apparmor_binaries=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    facts = gather_preflight_facts(module.params["user"], apparmor_binaries=module.params["apparmor_binaries"])
    module.exit_json(changed=False, facts=facts, ansible_facts=dict(u7s_preflight=facts))


if __name__ == "__main__":
    main()
