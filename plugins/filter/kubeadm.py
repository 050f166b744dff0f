# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters over the kubeadm role's reset decisions (docs in the .yml files beside this one)."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.kubeadm_state import (
    init_decision as _init_decision,
    join_decision as _join_decision,
)


def _require_mapping(value: t.Any, what: str, filter_name: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(
            "%s expects %s to be a dictionary, got %s." % (filter_name, what, type(value).__name__)
        )
    return value


def kubeadm_init_decision(probe: t.Any, context: t.Any) -> dict[str, t.Any]:
    """What the control-plane host's kubeadm init may do: done, init, adopt or refuse."""
    try:
        return _init_decision(_require_mapping(probe, "the probe", "kubeadm_init_decision"),
                              _require_mapping(context, "the context", "kubeadm_init_decision"))
    except ValueError as exc:
        raise AnsibleFilterError("kubeadm_init_decision: %s" % exc) from None


def kubeadm_join_decision(probe: t.Any, registered: t.Any, context: t.Any) -> dict[str, t.Any]:
    """What a joining host's kubeadm join may do: done, join or adopt."""
    try:
        return _join_decision(_require_mapping(probe, "the probe", "kubeadm_join_decision"), registered,
                              _require_mapping(context, "the context", "kubeadm_join_decision"))
    except ValueError as exc:
        raise AnsibleFilterError("kubeadm_join_decision: %s" % exc) from None


class FilterModule:
    """u7s.cluster kubeadm filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "kubeadm_init_decision": kubeadm_init_decision,
            "kubeadm_join_decision": kubeadm_join_decision,
        }
