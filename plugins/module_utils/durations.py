# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Durations as kubeadm takes them for token lifetimes: 1h, 10m, 1h30m, 90s, or plain seconds."""

from __future__ import annotations

import re
import typing as t

_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: t.Any, option: str) -> int:
    """Seconds of a duration option: an int, a digit string, or ``1h30m``-style text."""
    if isinstance(value, bool):
        raise ValueError("%s must be a duration like 1h, 10m or 90s, got %r." % (option, value))
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip()
        match = _DURATION_RE.match(text)
        if text.isdigit():
            seconds = int(text)
        elif text and match:
            hours, minutes, secs = (int(part or 0) for part in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            raise ValueError("%s must be a duration like 1h, 10m, 1h30m or 90s (or seconds), got %r." % (option, value))
    if seconds < 0:
        raise ValueError("%s must not be negative, got %r." % (option, value))
    return seconds
