#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: subid
short_description: Give a user exactly one subordinate UID range and one subordinate GID range
version_added: 0.1.0
description:
  - Makes sure O(user) has exactly one entry in C(/etc/subuid) and exactly one in C(/etc/subgid),
    as rootless container engines (through C(newuidmap) and C(newgidmap)) need.
  - An entry may name the user by login name or by numeric uid; both count as the user's.
  - When the user has no entry in a file, allocates the lowest free range of O(count) IDs at or above
    O(min_start) that overlaps no existing entry (first fit, like C(useradd)) and appends one line.
    The range also keeps clear of the host's own IDs - the system range (below C(UID_MIN) or C(GID_MIN)
    of C(/etc/login.defs), and at least up to C(SYS_UID_MAX) or C(SYS_GID_MAX)) and the uid of every
    account (C(/etc/subuid)) or the gid of every group (C(/etc/subgid)) that NSS enumerates.
  - When the user already has one entry with at least O(count) IDs that overlaps no other entry,
    leaves the file alone.
  - When the user has several entries, a too small one, one that overlaps another entry, or one that takes
    in the system range or an account's ID (root in the user's containers would be that account), fails
    with a message that names the file, the lines and the fix, and changes neither file.
    It never adds a second line for the user, which would break C(newuidmap).
  - Comments, blank lines and other entries are kept as they are. Files are replaced atomically,
    keeping their mode and owner; a missing file counts as empty.
options:
  user:
    description:
      - Login name of the user that runs the rootless cluster.
      - The user does not have to exist yet; entries naming its uid are only recognized when it does.
    type: str
    required: true
  count:
    description:
      - Number of subordinate IDs the user needs in each file.
      - At least 65536, which covers the IDs a Kubernetes node image uses.
    type: int
    default: 65536
  min_start:
    description:
      - Lowest ID a newly allocated range may start at.
      - Default C(SUB_UID_MIN) (C(/etc/subuid)) and C(SUB_GID_MIN) (C(/etc/subgid)) of C(/etc/login.defs),
        100000 where it does not set them.
    type: int
  subuid_path:
    description:
      - Path of the subordinate UID file.
    type: path
    default: /etc/subuid
  subgid_path:
    description:
      - Path of the subordinate GID file.
    type: path
    default: /etc/subgid
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the ranges that would be allocated without writing anything.
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Accounts of a directory (LDAP, SSSD) are only seen where NSS enumerates them; SSSD does not by default.
  - Processes of the user that already use the old ranges must be restarted after a change,
    which this module does not do.
seealso:
  - name: subuid(5)
    description: Format of the subordinate UID file.
    link: https://man7.org/linux/man-pages/man5/subuid.5.html
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: Give the cluster user its subordinate ID ranges
  u7s.cluster.subid:
    user: u7s

- name: Ask for a larger range, allocated from 1000000 on
  u7s.cluster.subid:
    user: u7s
    count: 131072
    min_start: 1000000
  register: u7s_subid

- name: Show the UID range
  ansible.builtin.debug:
    msg: "{{ u7s_subid.subuid.start }}-{{ u7s_subid.subuid.start + u7s_subid.subuid.count - 1 }}"
"""

RETURN = r"""
subuid:
  description:
    - The user's subordinate UID range after the run (in check mode, the range that would be allocated).
  returned: success
  type: dict
  contains:
    start:
      description: First ID of the range.
      type: int
      returned: success
      sample: 100000
    count:
      description: Number of IDs in the range.
      type: int
      returned: success
      sample: 65536
subgid:
  description:
    - The user's subordinate GID range after the run (in check mode, the range that would be allocated).
  returned: success
  type: dict
  contains:
    start:
      description: First ID of the range.
      type: int
      returned: success
      sample: 100000
    count:
      description: Number of IDs in the range.
      type: int
      returned: success
      sample: 65536
"""

import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.u7s.cluster.plugins.module_utils.files import write_atomically
from ansible_collections.u7s.cluster.plugins.module_utils.host_facts import read_accounts, read_login_defs
from ansible_collections.u7s.cluster.plugins.module_utils.subid import (
    DEFAULT_COUNT,
    SubidConflictError,
    SubidPlan,
    parse_subid,
    plan_subid,
    subordinate_min,
)


def lookup_uid(user: str) -> int | None:
    """The user's uid, or None while the user does not exist."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def read_text(path: str) -> str:
    """File content; a missing file reads as empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=dict(
            user=dict(type="str", required=True),
            count=dict(type="int", default=DEFAULT_COUNT),
            min_start=dict(type="int"),
            subuid_path=dict(type="path", default="/etc/subuid"),
            subgid_path=dict(type="path", default="/etc/subgid"),
        ),
        supports_check_mode=True,
    )
    user: str = module.params["user"]
    count: int = module.params["count"]
    min_start: int | None = module.params["min_start"]
    if count < DEFAULT_COUNT:
        module.fail_json(msg="count must be at least %d, got %d." % (DEFAULT_COUNT, count))
    if min_start is not None and min_start < 1:
        module.fail_json(msg="min_start must be positive, got %d." % min_start)
    uid = lookup_uid(user)
    login_defs = read_login_defs()
    accounts = read_accounts()

    # Plan both files before writing either, so a conflict changes nothing.
    plans: dict[str, SubidPlan] = {}
    conflicts: list[str] = []
    for kind in ("subuid", "subgid"):
        path: str = module.params["%s_path" % kind]
        try:
            text = read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg="Cannot read %s: %s" % (path, to_native(exc)))
        for line_number, line in parse_subid(text).malformed:
            module.warn("%s line %d is not owner:start:count and is ignored: %r" % (path, line_number, line))
        try:
            plans[kind] = plan_subid(
                path, text, user, uid, count,
                min_start if min_start is not None else subordinate_min(kind, login_defs),
                kind, login_defs, accounts["users" if kind == "subuid" else "groups"])
        except SubidConflictError as exc:
            conflicts.append(str(exc))
    if conflicts:
        module.fail_json(msg=" ".join(conflicts))

    changed_plans = [plan for plan in plans.values() if plan.changed]
    if not module.check_mode:
        for plan in changed_plans:
            try:
                write_atomically(module, plan.path, plan.after)
            except OSError as exc:
                module.fail_json(msg="Cannot write %s: %s" % (plan.path, to_native(exc)))

    result = dict(
        changed=bool(changed_plans),
        subuid=plans["subuid"].range.to_dict(),
        subgid=plans["subgid"].range.to_dict(),
    )
    if module._diff:
        result["diff"] = [
            dict(before_header=plan.path, after_header=plan.path, before=plan.before, after=plan.after)
            for plan in changed_plans
        ]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
