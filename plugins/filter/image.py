# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters for container image identities (docs in the .yml files beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.image_archive import normalize_image_id as _normalize


def normalize_image_id(image_id: t.Any) -> str:
    """An image ID with the sha256: prefix, however the engine printed it."""
    if not isinstance(image_id, str) or not image_id.strip():
        raise AnsibleFilterError("normalize_image_id expects an image ID string, got %r" % (image_id,))
    return _normalize(image_id)


class FilterModule:
    """u7s.cluster image filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {"normalize_image_id": normalize_image_id}
