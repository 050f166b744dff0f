# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""File writing shared by the collection's modules."""

from __future__ import annotations

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def write_atomically(module: AnsibleModule, path: str, text: str) -> None:
    """Replace path with text through a temporary file in the same directory.

    atomic_move keeps the mode, owner and SELinux context of an existing file,
    so readers never see a half-written file.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except Exception:
        os.unlink(temp_path)
        raise
    module.atomic_move(temp_path, path)
