# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Shared set-up of the unit tests.

pytest puts this directory on sys.path (rootdir-relative "prepend" imports), so
the helper modules beside this file (cluster_inventory.py) import by name from
every test below it.

Templates of the roles call the collection's own plugins by their full names
(``u7s.cluster.duration_seconds``); Ansible finds those through its collection
loader, which ansible-test installs for unit tests and ansible-playbook for a
run. It is installed here the same way, over the checkout that tests/conftest.py
links as ansible_collections/u7s/cluster.
"""

from __future__ import annotations

import os
import sys

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

# The sys.path entry tests/conftest.py added (before any collection module is imported).
_COLLECTIONS_ROOT = next(path for path in sys.path
                         if os.path.isdir(os.path.join(path, "ansible_collections", "u7s", "cluster")))

_AnsibleCollectionFinder(paths=[_COLLECTIONS_ROOT])._install()  # pylint: disable=protected-access
