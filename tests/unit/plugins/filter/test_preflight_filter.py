# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The preflight filters, directly and through Ansible's templating."""

from __future__ import annotations

import json
import os
import typing as t

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.filter.preflight import (
    FilterModule,
    needs_apparmor_userns_profile,
    preflight_problems,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "module_utils", "fixtures", "preflight")


def load(name: str) -> dict[str, t.Any]:
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_filters_are_registered() -> None:
    filters = FilterModule().filters()
    assert filters["preflight_problems"] is preflight_problems
    assert filters["needs_apparmor_userns_profile"] is needs_apparmor_userns_profile


def test_preflight_problems_passes_options_through() -> None:
    facts = load("rocky9_no_user_yet")
    assert len(preflight_problems(facts)) == 1
    assert preflight_problems(facts, {"create_user": True}) == []


def test_needs_apparmor_userns_profile() -> None:
    assert needs_apparmor_userns_profile(load("ubuntu2404_apparmor_restricted")) is True
    assert needs_apparmor_userns_profile(load("debian13_cgroup_v2")) is False


@pytest.mark.parametrize("bad", ["text", ["list"], None, 3])
def test_non_dict_facts_are_a_filter_error(bad: t.Any) -> None:
    with pytest.raises(AnsibleFilterError, match="expects the facts to be a dictionary"):
        preflight_problems(bad)
    with pytest.raises(AnsibleFilterError, match="expects the facts to be a dictionary"):
        needs_apparmor_userns_profile(bad)


def test_non_dict_options_are_a_filter_error() -> None:
    with pytest.raises(AnsibleFilterError, match="expects the options to be a dictionary"):
        preflight_problems({}, ["create_user"])


def test_normalize_image_id_filter():
    from ansible_collections.u7s.cluster.plugins.filter.image import FilterModule

    normalize = FilterModule().filters()["normalize_image_id"]
    assert normalize("ab" * 32) == "sha256:" + "ab" * 32
    assert normalize("sha256:" + "ab" * 32) == "sha256:" + "ab" * 32
    with pytest.raises(AnsibleFilterError):
        normalize("")
