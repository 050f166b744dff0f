# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The duration_seconds filter, directly and through Ansible's templating (as the kubeadm preflight uses it)."""

from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.u7s.cluster.plugins.filter.duration import FilterModule, duration_seconds


def templated(expression: str, **variables: t.Any) -> t.Any:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template("{{ " + expression + " }}"))


def test_filter_is_registered() -> None:
    assert FilterModule().filters() == {"duration_seconds": duration_seconds}


@pytest.mark.parametrize("value, seconds", [("1h", 3600), ("10m", 600), ("1h30m", 5400), ("90s", 90), ("3600", 3600),
                                            (3600, 3600), (0, 0)])
def test_seconds(value: t.Any, seconds: int) -> None:
    assert duration_seconds(value) == seconds
    assert duration_seconds(value, "kubeadm_join_token_ttl") == seconds


@pytest.mark.parametrize("value", ["1d", "", "-5", True, None, "1.5h"])
def test_refusals_are_filter_errors_naming_the_duration(value: t.Any) -> None:
    with pytest.raises(AnsibleFilterError, match="^duration_seconds: kubeadm_join_token_ttl must"):
        duration_seconds(value, "kubeadm_join_token_ttl")
    with pytest.raises(AnsibleFilterError, match="^duration_seconds: the duration must"):
        duration_seconds(value)


def test_through_templating_by_its_full_name() -> None:
    assert templated("ttl | u7s.cluster.duration_seconds('kubeadm_join_token_ttl')", ttl="1h30m") == 5400
    assert templated("ttl | u7s.cluster.duration_seconds", ttl=600) == 600
    # A native int, so the preflight compares numbers, not text.
    assert isinstance(templated("'2h' | u7s.cluster.duration_seconds"), int)


def test_a_refusal_through_templating_names_the_variable() -> None:
    with pytest.raises(AnsibleError, match="kubeadm_join_token_ttl must be a duration like 1h.*got '1d'"):
        templated("'1d' | u7s.cluster.duration_seconds('kubeadm_join_token_ttl')")
