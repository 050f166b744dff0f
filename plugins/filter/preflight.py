# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filters over the preflight decision logic (docs in the .yml files beside this one)."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.preflight import (
    apparmor_userns_profiles as _apparmor_userns_profiles,
    needs_apparmor_userns_profile as _needs_apparmor_userns_profile,
    preflight_problems as _preflight_problems,
)


def _require_mapping(value: t.Any, what: str, filter_name: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(
            "%s expects %s to be a dictionary, got %s." % (filter_name, what, type(value).__name__)
        )
    return value


def preflight_problems(facts: t.Any, options: t.Any = None) -> list[str]:
    """Problems that stop the host from running Usernetes, each with its fix."""
    facts = _require_mapping(facts, "the facts", "preflight_problems")
    if options is not None:
        options = _require_mapping(options, "the options", "preflight_problems")
    return _preflight_problems(facts, options)


def needs_apparmor_userns_profile(facts: t.Any) -> bool:
    """Whether AppArmor restricts unprivileged user namespaces on the host."""
    return _needs_apparmor_userns_profile(
        _require_mapping(facts, "the facts", "needs_apparmor_userns_profile")
    )


def apparmor_userns_profiles(binaries: t.Any, distribution_profiles: t.Any = None) -> list[dict[str, str]]:
    """The AppArmor profiles host_prereqs writes, each with a name no other binary's profile shares."""
    if isinstance(binaries, (str, bytes, Mapping)) or not isinstance(binaries, (list, tuple)):
        raise AnsibleFilterError(
            "apparmor_userns_profiles expects a list of paths, got %s." % type(binaries).__name__
        )
    if distribution_profiles is not None and (
            not isinstance(distribution_profiles, (list, tuple))
            or not all(isinstance(item, Mapping) for item in distribution_profiles)):
        raise AnsibleFilterError(
            "apparmor_userns_profiles expects the profiles of the preflight facts (a list of dictionaries)."
        )
    return _apparmor_userns_profiles(binaries, distribution_profiles)


class FilterModule:
    """u7s.cluster preflight filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {
            "preflight_problems": preflight_problems,
            "needs_apparmor_userns_profile": needs_apparmor_userns_profile,
            "apparmor_userns_profiles": apparmor_userns_profiles,
        }
