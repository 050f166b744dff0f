# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Durations as kubeadm takes them for token lifetimes (module_utils/durations.py)."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.durations import parse_duration

# (value, seconds): what parse_duration accepts; shared with the duration_seconds filter's tests.
VALID = [
    ("1h", 3600), ("10m", 600), ("90s", 90), ("1h30m", 5400), ("2h0m5s", 7205), ("600", 600), (600, 600), (0, 0),
    (" 24h ", 86400), ("0s", 0), ("1h1s", 3601),
]
INVALID = ["", "1d", "10 m", "m", "1m1h", "-5", -5, True, False, "1.5h", None, 1.5, "1H", "h1"]


@pytest.mark.parametrize("value, seconds", VALID)
def test_parse_duration(value: t.Any, seconds: int) -> None:
    assert parse_duration(value, "ttl") == seconds


@pytest.mark.parametrize("value", INVALID)
def test_parse_duration_rejects(value: t.Any) -> None:
    with pytest.raises(ValueError, match="^ttl must"):
        parse_duration(value, "ttl")


def test_messages_name_the_option_and_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("1d", "kubeadm_join_token_ttl")
    assert str(caught.value) == (
        "kubeadm_join_token_ttl must be a duration like 1h, 10m, 1h30m or 90s (or seconds), got '1d'.")
    with pytest.raises(ValueError) as caught:
        parse_duration(-5, "min_remaining")
    assert str(caught.value) == "min_remaining must not be negative, got -5."


def test_join_token_uses_this_parse_duration() -> None:
    """The module and the filter share one parser (it moved out of the module)."""
    from ansible_collections.u7s.cluster.plugins.filter import duration
    from ansible_collections.u7s.cluster.plugins.modules import join_token

    assert join_token.parse_duration is parse_duration
    assert duration.parse_duration is parse_duration
