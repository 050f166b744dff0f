# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Parse /etc/subuid and /etc/subgid and plan one subordinate ID range per user.

Everything here is pure (text in, text or data out), so it is unit-testable
without a host. The ``u7s.cluster.subid`` module does the file I/O and the
``u7s.cluster.preflight_problems`` filter reuses the checks.

File format (shadow-utils, see subuid(5)): one ``owner:start:count`` entry a
line, where ``owner`` is a login name or a numeric uid. Blank lines and
``#`` comments are allowed and are preserved untouched, as are lines that do
not parse (newuidmap skips them too).

Rules for the cluster user, which newuidmap/newgidmap and rootless container
engines rely on:

* exactly one entry names the user (by name or by uid): with several, the
  engines may map the wrong one or refuse to start, so the first-found-wins
  behaviour of newuidmap must not be left to chance;
* that range holds at least the requested number of IDs (65536 covers the
  UIDs/GIDs a Kubernetes node image uses);
* it overlaps no range of another entry, or two users would share IDs.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

# shadow-utils' defaults (SUB_UID_MIN, SUB_UID_COUNT in login.defs).
DEFAULT_MIN_START = 100000
DEFAULT_COUNT = 65536
# IDs are 32 bit and (uid_t)-1 means "no ID", so a range must end before it.
ID_LIMIT = 2 ** 32 - 1


@dataclass(frozen=True)
class SubidEntry:
    """One parsed ``owner:start:count`` line."""

    owner: str
    start: int
    count: int
    line_number: int
    text: str

    @property
    def end(self) -> int:
        """First ID after the range."""
        return self.start + self.count

    def overlaps(self, start: int, count: int) -> bool:
        """Whether this range shares an ID with [start, start + count)."""
        return self.start < start + count and start < self.end

    def describe(self) -> str:
        """Human readable ``line N 'owner:start:count'``, for messages."""
        return "line %d %r" % (self.line_number, self.text)

    def to_dict(self) -> dict[str, t.Any]:
        """JSON-friendly form, as returned by the preflight_facts module."""
        return {
            "owner": self.owner,
            "start": self.start,
            "count": self.count,
            "line": self.line_number,
        }

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> SubidEntry:
        """Inverse of :meth:`to_dict` (``line`` is optional)."""
        owner = str(data["owner"])
        start = int(data["start"])
        count = int(data["count"])
        line_number = int(data.get("line") or 0)
        return cls(owner, start, count, line_number, "%s:%d:%d" % (owner, start, count))


@dataclass(frozen=True)
class SubidFile:
    """A parsed subordinate ID file: its lines and the entries among them."""

    lines: tuple[str, ...]
    entries: tuple[SubidEntry, ...]
    # (line number, text) of non-blank, non-comment lines that do not parse.
    malformed: tuple[tuple[int, str], ...]

    @property
    def text(self) -> str:
        """The file content, unchanged."""
        return "".join(self.lines)


@dataclass(frozen=True)
class SubidRange:
    """A range of subordinate IDs."""

    start: int
    count: int

    def to_dict(self) -> dict[str, int]:
        """JSON-friendly form, as returned by the subid module."""
        return {"start": self.start, "count": self.count}


@dataclass(frozen=True)
class SubidPlan:
    """What to do with one file so the user ends up with exactly one range."""

    path: str
    before: str
    after: str
    range: SubidRange

    @property
    def changed(self) -> bool:
        """Whether the file has to be written."""
        return self.before != self.after


class SubidConflictError(Exception):
    """The file has entries for the user that the module must not fix itself."""


def parse_entry(line: str, line_number: int) -> SubidEntry | None:
    """Parse one line; None for blank lines, comments and malformed lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split(":")
    if len(fields) != 3 or not fields[0]:
        return None
    owner, start, count = fields
    if not (start.isdigit() and count.isdigit()):
        return None
    return SubidEntry(owner, int(start), int(count), line_number, text)


def parse_subid(text: str) -> SubidFile:
    """Parse the content of a subuid/subgid file (an empty string if absent)."""
    lines = tuple(text.splitlines(True))
    entries: list[SubidEntry] = []
    malformed: list[tuple[int, str]] = []
    for line_number, line in enumerate(lines, start=1):
        entry = parse_entry(line, line_number)
        if entry is not None:
            entries.append(entry)
        elif line.strip() and not line.strip().startswith("#"):
            malformed.append((line_number, line.strip()))
    return SubidFile(lines, tuple(entries), tuple(malformed))


def owner_matches(owner: str, user: str, uid: int | None) -> bool:
    """Whether an entry's owner field names the user, by name or by uid."""
    return owner == user or (uid is not None and owner == str(uid))


def user_entries(
    entries: t.Iterable[SubidEntry], user: str, uid: int | None
) -> list[SubidEntry]:
    """The entries that belong to the user."""
    return [entry for entry in entries if owner_matches(entry.owner, user, uid)]


def user_range_problems(
    entries: t.Sequence[SubidEntry],
    user: str,
    uid: int | None,
    count: int,
    path: str,
) -> list[str]:
    """Why the user's entries in one file cannot be kept as they are.

    An empty list means the user has no entry (one can be allocated) or exactly
    one entry that is large enough and overlaps nobody. Each message names the
    file and the lines and ends with ``Fix: ...``.
    """
    mine = user_entries(entries, user, uid)
    if not mine:
        return []
    if len(mine) > 1:
        return [
            "%s: user %r has %d entries (%s); newuidmap/newgidmap need exactly one. "
            "Fix: delete all but one of these lines in %s (keep one whose count is "
            "at least %d and which overlaps no other entry), stop the user's "
            "containers and re-run."
            % (path, user, len(mine), ", ".join(entry.describe() for entry in mine), path, count)
        ]
    problems = []
    entry = mine[0]
    if entry.count < count:
        problems.append(
            "%s: user %r has only %d subordinate IDs at %s, %d are required. "
            "Fix: delete that line from %s so a free range of %d is allocated, "
            "or raise its count to at least %d without overlapping other entries."
            % (path, user, entry.count, entry.describe(), count, path, count, count)
        )
    others = [
        other for other in entries
        if other not in mine and other.overlaps(entry.start, entry.count)
    ]
    if others:
        problems.append(
            "%s: the range of user %r at %s overlaps %s, so the users would share IDs. "
            "Fix: delete the user's line from %s so a free range is allocated (or "
            "move one of the ranges), then re-run."
            % (path, user, entry.describe(), ", ".join(other.describe() for other in others), path)
        )
    return problems


def find_free_start(
    entries: t.Iterable[SubidEntry], count: int, min_start: int = DEFAULT_MIN_START
) -> int:
    """The lowest start >= min_start whose range of count IDs overlaps no entry.

    First fit in the gaps between the existing ranges, like useradd does; with
    the usual 65536-sized ranges from 100000 on, that yields the same starts
    (100000, 165536, ...) useradd would.
    """
    candidate = min_start
    for entry in sorted(entries, key=lambda item: (item.start, item.end)):
        if entry.count == 0 or entry.end <= candidate:
            continue
        if candidate + count <= entry.start:
            break
        candidate = entry.end
    if candidate + count > ID_LIMIT:
        raise SubidConflictError(
            "No free range of %d IDs at or above %d below %d." % (count, min_start, ID_LIMIT)
        )
    return candidate


def append_entry(text: str, user: str, id_range: SubidRange) -> str:
    """The file text with a line for the user appended."""
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "%s:%d:%d\n" % (user, id_range.start, id_range.count)


def plan_subid(
    path: str,
    text: str,
    user: str,
    uid: int | None = None,
    count: int = DEFAULT_COUNT,
    min_start: int = DEFAULT_MIN_START,
) -> SubidPlan:
    """Plan how the file at path (content text) gives the user one range.

    Keeps a conforming entry, or appends a newly allocated one if the user has
    none. Raises :class:`SubidConflictError` (with the ``Fix:`` advice) when
    the user's entries need a human decision.
    """
    parsed = parse_subid(text)
    problems = user_range_problems(parsed.entries, user, uid, count, path)
    if problems:
        raise SubidConflictError(" ".join(problems))
    mine = user_entries(parsed.entries, user, uid)
    if mine:
        return SubidPlan(path, text, text, SubidRange(mine[0].start, mine[0].count))
    try:
        start = find_free_start(parsed.entries, count, min_start)
    except SubidConflictError as exc:
        raise SubidConflictError(
            "%s: %s Fix: lower min_start or remove unused entries." % (path, exc)
        ) from None
    new_range = SubidRange(start, count)
    return SubidPlan(path, text, append_entry(text, user, new_range), new_range)
