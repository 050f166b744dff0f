# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Make ``ansible_collections.u7s.cluster`` importable for ``pytest tests/unit``.

The Makefile links this checkout as .build/collections/ansible_collections/u7s/cluster;
the link is created here too when missing, so pytest works in a fresh clone.
``ansible_collections`` has no __init__.py anywhere, so this directory merges
with the namespace package of the same name that the pip ``ansible``
distribution installs (namespace packages recompute their path from sys.path).
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def collections_root() -> str:
    """The directory that holds ansible_collections/u7s/cluster."""
    parts = REPO_ROOT.split(os.sep)
    if len(parts) > 3 and parts[-3] == "ansible_collections":
        # Already inside an ansible_collections tree (ansible-test, a sanity copy).
        return os.sep.join(parts[:-3])
    root = os.path.join(REPO_ROOT, ".build", "collections")
    link = os.path.join(root, "ansible_collections", "u7s", "cluster")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO_ROOT, link)
    return root


_ROOT = collections_root()
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
