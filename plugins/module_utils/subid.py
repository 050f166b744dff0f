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
* it overlaps no range of another entry, or two users would share IDs;
* it takes in no real ID of the host: none of the system range (below
  ``UID_MIN``/``GID_MIN`` of ``/etc/login.defs``) and no existing account's uid
  (subuid) or group's gid (subgid), or root and the other IDs in the user's
  containers would be those accounts on the host. The allocator
  (:func:`find_free_start`) skips them as well.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

# shadow-utils' defaults (SUB_UID_MIN, SUB_UID_COUNT in login.defs).
DEFAULT_MIN_START = 100000
DEFAULT_COUNT = 65536
# IDs are 32 bit and (uid_t)-1 means "no ID", so a range must end before it.
ID_LIMIT = 2 ** 32 - 1

# The /etc/login.defs keys the checks read, with shadow-utils' defaults.
LOGIN_DEFS_DEFAULTS = {
    "UID_MIN": 1000,
    "UID_MAX": 60000,
    "SYS_UID_MAX": 999,
    "GID_MIN": 1000,
    "GID_MAX": 60000,
    "SYS_GID_MAX": 999,
    "SUB_UID_MIN": DEFAULT_MIN_START,
    "SUB_UID_MAX": 600100000,
    "SUB_UID_COUNT": DEFAULT_COUNT,
    "SUB_GID_MIN": DEFAULT_MIN_START,
    "SUB_GID_MAX": 600100000,
    "SUB_GID_COUNT": DEFAULT_COUNT,
}
# Per file: the kind of ID, the login.defs key of the first non-system ID and
# of the lowest subordinate ID, and what owns an ID of that kind.
KINDS = {
    "subuid": ("UID", "UID_MIN", "SYS_UID_MAX", "SUB_UID_MIN", "account"),
    "subgid": ("GID", "GID_MIN", "SYS_GID_MAX", "SUB_GID_MIN", "group"),
}
# Accounts named in a message; the rest are counted.
NAMED_ACCOUNTS = 3


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
    entries: t.Iterable[SubidEntry],
    count: int,
    min_start: int = DEFAULT_MIN_START,
    reserved: t.Iterable[tuple[int, int]] = (),
) -> int:
    """The lowest start >= min_start whose range of count IDs overlaps no entry and no reserved range.

    First fit in the gaps between the existing ranges, like useradd does; with
    the usual 65536-sized ranges from 100000 on, that yields the same starts
    (100000, 165536, ...) useradd would. ``reserved`` holds more ``(start, count)``
    ranges to keep clear of (:func:`reserved_ranges`: the system range and the
    host's own IDs).
    """
    taken = [(entry.start, entry.end) for entry in entries if entry.count > 0]
    taken.extend((start, start + size) for start, size in reserved if size > 0)
    candidate = min_start
    for start, end in sorted(taken):
        if end <= candidate:
            continue
        if candidate + count <= start:
            break
        candidate = end
    if candidate + count > ID_LIMIT:
        raise SubidConflictError(
            "No free range of %d IDs at or above %d below %d." % (count, min_start, ID_LIMIT)
        )
    return candidate


def parse_login_defs(text: str) -> dict[str, int]:
    """The numeric keys of LOGIN_DEFS_DEFAULTS from /etc/login.defs text, defaults where unset or not a number."""
    values = dict(LOGIN_DEFS_DEFAULTS)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in values and fields[1].isascii() and fields[1].isdigit():
            values[fields[0]] = int(fields[1])
    return values


def login_defs_value(login_defs: t.Mapping[str, t.Any] | None, key: str) -> int:
    """A login.defs value as an int, the default where it is missing or not a number."""
    value = (login_defs or {}).get(key)
    if isinstance(value, bool):
        return LOGIN_DEFS_DEFAULTS[key]
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return LOGIN_DEFS_DEFAULTS[key]


def system_limit(kind: str, login_defs: t.Mapping[str, t.Any] | None) -> int:
    """The first ID above the system range of a subuid/subgid file's kind of ID.

    The system range is everything below UID_MIN (GID_MIN), and at least 0..SYS_UID_MAX (SYS_GID_MAX).
    """
    _id_kind, first_key, system_max_key, _sub_key, _owner = KINDS[kind]
    return max(login_defs_value(login_defs, first_key), login_defs_value(login_defs, system_max_key) + 1)


def subordinate_min(kind: str, login_defs: t.Mapping[str, t.Any] | None) -> int:
    """SUB_UID_MIN (SUB_GID_MIN): where useradd starts allocating subordinate IDs."""
    return login_defs_value(login_defs, KINDS[kind][3])


def _account_id(account: t.Mapping[str, t.Any]) -> int | None:
    try:
        return int(account["id"])
    except (KeyError, TypeError, ValueError):
        return None


def reserved_ranges(
    kind: str, login_defs: t.Mapping[str, t.Any] | None, accounts: t.Iterable[t.Mapping[str, t.Any]]
) -> list[tuple[int, int]]:
    """(start, count) ranges a subordinate range must keep clear of: the system range, every account's ID.

    ``accounts`` are ``{"name": ..., "id": ...}`` mappings: the host's users for
    subuid, its groups for subgid.
    """
    ranges = [(0, system_limit(kind, login_defs))]
    ids = {_account_id(account) for account in accounts}
    ranges.extend((account_id, 1) for account_id in sorted(i for i in ids if i is not None))
    return ranges


def describe_accounts(accounts: t.Sequence[t.Mapping[str, t.Any]], owner: str) -> str:
    """'accounts alice (1001), bob (1002), carol (1003) and 4 more', for messages."""
    named = ", ".join("%s (%s)" % (account.get("name"), account.get("id")) for account in accounts[:NAMED_ACCOUNTS])
    more = len(accounts) - NAMED_ACCOUNTS
    return "%s%s %s%s" % (owner, "s" if len(accounts) > 1 else "", named, " and %d more" % more if more > 0 else "")


def account_range_problems(
    entries: t.Sequence[SubidEntry],
    user: str,
    uid: int | None,
    count: int,
    path: str,
    kind: str,
    login_defs: t.Mapping[str, t.Any] | None,
    accounts: t.Sequence[t.Mapping[str, t.Any]],
    host: str | None = None,
) -> list[str]:
    """Why the user's one entry in a subuid (subgid) file takes in real IDs of the host; empty when it does not.

    Real IDs: the system range (:func:`system_limit`) and the IDs of ``accounts``
    (users for subuid, groups for subgid). Several entries, or none, are
    :func:`user_range_problems`' business (and an allocated range is clear).
    """
    mine = user_entries(entries, user, uid)
    if len(mine) != 1:
        return []
    entry = mine[0]
    limit = system_limit(kind, login_defs)
    clashing = sorted(
        (account for account in accounts
         if _account_id(account) is not None and entry.start <= _account_id(account) < entry.end),  # type: ignore[operator]
        key=lambda account: (_account_id(account), str(account.get("name"))),
    )
    in_system = entry.count > 0 and entry.start < limit
    if not in_system and not clashing:
        return []
    id_kind, first_key, _system_max_key, _sub_key, owner = KINDS[kind]
    taken = []
    if in_system:
        taken.append("the system %ss 0-%d (below %s %d, /etc/login.defs)" % (id_kind, limit - 1, first_key, limit))
    if clashing:
        taken.append("the %ss of the %s" % (id_kind, describe_accounts(clashing, owner)))
    size = max(count, entry.count)
    others = [other for other in entries if other is not entry]
    try:
        free = find_free_start(others, size, subordinate_min(kind, login_defs),
                               reserved_ranges(kind, login_defs, accounts))
        replacement = "replace that line by %s:%d:%d" % (user, free, size)
    except SubidConflictError:
        replacement = "replace that line by one of %d IDs" % size
    return [
        "%s%s %s gives user %r the subordinate %ss %d-%d, which take in %s, so root and the other IDs in "
        "the user's containers would be those on the host. Fix: while the user runs no containers on this host, "
        "%s (clear of the system range, every %s and every other entry); a node already running on the old "
        "range keeps it until it is removed from the cluster, so leave this host out of the inventory until then."
        % ("Host %s: " % host if host else "", path, entry.describe(), user, id_kind, entry.start, entry.end - 1,
           " and ".join(taken), replacement, owner)
    ]


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
    kind: str | None = None,
    login_defs: t.Mapping[str, t.Any] | None = None,
    accounts: t.Sequence[t.Mapping[str, t.Any]] = (),
) -> SubidPlan:
    """Plan how the file at path (content text) gives the user one range.

    Keeps a conforming entry, or appends a newly allocated one if the user has
    none. Raises :class:`SubidConflictError` (with the ``Fix:`` advice) when
    the user's entries need a human decision. With ``kind`` ("subuid" or
    "subgid"), the user's range must also keep clear of the system range of
    ``login_defs`` and of the IDs of ``accounts``, and an allocated one does.
    """
    parsed = parse_subid(text)
    problems = user_range_problems(parsed.entries, user, uid, count, path)
    if kind is not None and not problems:
        problems = account_range_problems(parsed.entries, user, uid, count, path, kind, login_defs, accounts)
    if problems:
        raise SubidConflictError(" ".join(problems))
    mine = user_entries(parsed.entries, user, uid)
    if mine:
        return SubidPlan(path, text, text, SubidRange(mine[0].start, mine[0].count))
    reserved = reserved_ranges(kind, login_defs, accounts) if kind is not None else []
    try:
        start = find_free_start(parsed.entries, count, min_start, reserved)
    except SubidConflictError as exc:
        raise SubidConflictError(
            "%s: %s Fix: remove the entries of users that no longer exist from %s." % (path, exc, path)
        ) from None
    new_range = SubidRange(start, count)
    return SubidPlan(path, text, append_entry(text, user, new_range), new_range)
