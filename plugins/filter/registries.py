# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters of the nodes' registry configuration (docs in <filter name>.yml beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.registries import (
    RegistriesError,
    leftovers,
    registry_files as render,
)


def registry_files(registries: t.Any, mount: str) -> list[dict[str, t.Any]]:
    """The files of the registries directory for u7s_registries; MOUNT is where the node sees it."""
    try:
        return render(registries, str(mount))
    except RegistriesError as exc:
        raise AnsibleFilterError("registry_files: %s" % exc) from None


def registry_leftovers(found: t.Any, files: t.Any) -> list[str]:
    """The paths FOUND under the registries directory that FILES (of registry_files) no longer hold."""
    try:
        return leftovers([str(path) for path in found], files)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("registry_leftovers: %s" % exc) from None


class FilterModule:
    """u7s.cluster registry filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {"registry_files": registry_files, "registry_leftovers": registry_leftovers}
