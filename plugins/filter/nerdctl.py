# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters for the node container in rootless nerdctl (docs in the .yml files beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils import nerdctl as _nerdctl


def _wrap(func: t.Callable[..., t.Any], name: str) -> t.Callable[..., t.Any]:
    def call(*args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return func(*args, **kwargs)
        except (_nerdctl.SpecError, ValueError, TypeError, KeyError) as exc:
            raise AnsibleFilterError("%s: %s" % (name, exc)) from exc
    call.__name__ = name
    call.__doc__ = func.__doc__
    return call


nerdctl_run_argv = _wrap(_nerdctl.run_argv, "nerdctl_run_argv")
nerdctl_container_action = _wrap(_nerdctl.container_action, "nerdctl_container_action")
nerdctl_network_action = _wrap(_nerdctl.network_action, "nerdctl_network_action")
nerdctl_image_ids = _wrap(_nerdctl.image_ids, "nerdctl_image_ids")
nerdctl_image_names = _wrap(_nerdctl.image_names, "nerdctl_image_names")
nerdctl_bypass4netns_annotations = _wrap(_nerdctl.bypass4netns_annotations, "nerdctl_bypass4netns_annotations")


class FilterModule:
    """u7s.cluster nerdctl filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "nerdctl_run_argv": nerdctl_run_argv,
            "nerdctl_container_action": nerdctl_container_action,
            "nerdctl_network_action": nerdctl_network_action,
            "nerdctl_image_ids": nerdctl_image_ids,
            "nerdctl_image_names": nerdctl_image_names,
            "nerdctl_bypass4netns_annotations": nerdctl_bypass4netns_annotations,
        }
