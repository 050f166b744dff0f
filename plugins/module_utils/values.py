# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Small checks on the plain values that inventories and filters pass around."""

from __future__ import annotations

import re
import typing as t

# A DNS host name: labels of letters, digits and '-' (not at either end), 1 to 63 long, joined by dots.
# Used with fullmatch.
HOST_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*")


def is_empty(value: t.Any) -> bool:
    """None or text of only whitespace: how an unset or blank inventory variable arrives."""
    return value is None or (isinstance(value, str) and not value.strip())
