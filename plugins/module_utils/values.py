# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Small checks on the plain values that inventories and filters pass around."""

from __future__ import annotations

import typing as t


def is_empty(value: t.Any) -> bool:
    """None or text of only whitespace: how an unset or blank inventory variable arrives."""
    return value is None or (isinstance(value, str) and not value.strip())
