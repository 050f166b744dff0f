#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: kernel_modules
short_description: Load kernel modules when they are neither loaded nor built in, without failing on missing ones
version_added: 0.1.0
description:
  - For each of O(names), reports the module as already loaded (listed in C(/proc/modules) or
    present in C(/sys/module)), as built in (listed in C(modules.builtin) or C(modules.builtin.modinfo)
    of the running kernel), or loads it with C(modprobe).
  - A module that C(modprobe) cannot load does not fail the task. It is returned in RV(unavailable)
    with the error and a warning is emitted, because a monolithic or locked-down kernel (or a container)
    may lack a module that the host does not need.
  - Module names may use C(-) and C(_) interchangeably, as C(modprobe) allows.
  - Optionally writes a C(modules-load.d) file so the modules are loaded again at boot.
options:
  names:
    description:
      - Names of the kernel modules to make available.
    type: list
    elements: str
    required: true
  persist_file:
    description:
      - When set, path of a C(modules-load.d) file (for example C(/etc/modules-load.d/u7s.conf)) to write
        with a header comment and one line for each module of O(names), so C(systemd-modules-load) loads
        them at boot.
      - Modules that are unavailable are left out, because C(systemd-modules-load.service) fails at boot
        on a module it cannot load.
      - The file is only rewritten when its content differs.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Asks C(modprobe --dry-run) instead of loading, and writes no file.
  diff_mode:
    support: full
    details: Shows the change to O(persist_file).
  platform:
    platforms: posix
requirements:
  - C(modprobe) (kmod) on the managed host for modules that are not loaded yet.
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Load the modules that rootless Kubernetes networking uses, now and at boot
  u7s.cluster.kernel_modules:
    names:
      - br_netfilter
      - ip6_tables
      - ip_tables
      - iptable_nat
      - vxlan
    persist_file: /etc/modules-load.d/u7s.conf
  register: u7s_kernel_modules

- name: Tell which modules the kernel lacks
  ansible.builtin.debug:
    msg: "Not available: {{ u7s_kernel_modules.unavailable.keys() | join(', ') }}"
  when: u7s_kernel_modules.unavailable | length > 0
"""

RETURN = r"""
loaded:
  description: Modules that were loaded by this run (in check mode, that would be loaded).
  returned: success
  type: list
  elements: str
  sample: [br_netfilter]
builtin:
  description: Modules that are built into the running kernel.
  returned: success
  type: list
  elements: str
  sample: [overlay]
already_loaded:
  description: Modules that were loaded before this run.
  returned: success
  type: list
  elements: str
  sample: [ip_tables]
unavailable:
  description: Modules that C(modprobe) could not load, mapped to its error message.
  returned: success
  type: dict
  sample: {"vxlan": "modprobe: FATAL: Module vxlan not found in directory /lib/modules/6.1.0-18-amd64"}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.u7s.cluster.plugins.module_utils.files import write_atomically
from ansible_collections.u7s.cluster.plugins.module_utils.kernel_modules import (
    ensure_modules,
    render_modules_load_file,
)


def read_text(path: str) -> str | None:
    """File content, None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            persist_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    modprobe_path = module.get_bin_path("modprobe")

    def modprobe(name: str) -> tuple[int, str, str]:
        if modprobe_path is None:
            return 127, "", "modprobe not found on the host (install kmod)"
        # --dry-run resolves the module without inserting it.
        command = [modprobe_path, "--dry-run", name] if module.check_mode else [modprobe_path, name]
        return module.run_command(command)

    result = ensure_modules(module.params["names"], modprobe, os.uname().release)
    for name, error in result.unavailable.items():
        module.warn("Kernel module %s is not available and was not loaded: %s" % (name, error))

    changed = result.changed
    diff = None
    persist_file = module.params["persist_file"]
    if persist_file:
        wanted = render_modules_load_file(result.available)
        try:
            current = read_text(persist_file)
        except (OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg="Cannot read %s: %s" % (persist_file, to_native(exc)))
        if current != wanted:
            changed = True
            diff = dict(before_header=persist_file, after_header=persist_file, before=current or "", after=wanted)
            if not module.check_mode:
                try:
                    write_atomically(module, persist_file, wanted)
                except OSError as exc:
                    module.fail_json(msg="Cannot write %s: %s" % (persist_file, to_native(exc)))

    output = dict(
        changed=changed,
        loaded=result.loaded,
        builtin=result.builtin,
        already_loaded=result.already_loaded,
        unavailable=result.unavailable,
    )
    if module._diff and diff:
        output["diff"] = diff
    module.exit_json(**output)


if __name__ == "__main__":
    main()
