# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Jinja2 filter duration_seconds (docs in duration_seconds.yml beside this one)."""

from __future__ import annotations

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.u7s.cluster.plugins.module_utils.durations import parse_duration


def duration_seconds(value: t.Any, name: str = "the duration") -> int:
    """Seconds of a duration such as 1h, 10m, 1h30m, 90s or 3600."""
    try:
        return parse_duration(value, name)
    except ValueError as exc:
        raise AnsibleFilterError("duration_seconds: %s" % exc) from None


class FilterModule:
    """u7s.cluster duration filter."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        """Map filter names to functions."""
        return {"duration_seconds": duration_seconds}
