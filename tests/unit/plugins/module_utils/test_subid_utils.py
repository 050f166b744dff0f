# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Parsing, allocation and conflict detection of /etc/subuid and /etc/subgid."""

from __future__ import annotations

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import subid
from ansible_collections.u7s.cluster.plugins.module_utils.subid import (
    SubidConflictError,
    SubidEntry,
    SubidRange,
    append_entry,
    find_free_start,
    parse_subid,
    plan_subid,
    user_range_problems,
)

DEBIAN_STYLE = """\
# subordinate ids, managed by hand
alice:100000:65536

bob:165536:65536
"""


def entry(owner: str, start: int, count: int, line_number: int = 1) -> SubidEntry:
    return SubidEntry(owner, start, count, line_number, "%s:%d:%d" % (owner, start, count))


class TestParse:
    def test_entries_and_line_numbers(self) -> None:
        parsed = parse_subid(DEBIAN_STYLE)
        assert [(e.owner, e.start, e.count, e.line_number) for e in parsed.entries] == [
            ("alice", 100000, 65536, 2),
            ("bob", 165536, 65536, 4),
        ]
        assert parsed.malformed == ()

    def test_text_round_trips_with_comments_and_blank_lines(self) -> None:
        assert parse_subid(DEBIAN_STYLE).text == DEBIAN_STYLE

    def test_numeric_owner_and_surrounding_whitespace(self) -> None:
        parsed = parse_subid("  1001:200000:65536  \n")
        assert parsed.entries[0].owner == "1001"
        assert parsed.entries[0].text == "1001:200000:65536"

    def test_malformed_lines_are_kept_but_not_entries(self) -> None:
        text = "garbage\nalice:x:65536\nalice:1:2:3\n:1:2\ncarol:300000:65536\n"
        parsed = parse_subid(text)
        assert [e.owner for e in parsed.entries] == ["carol"]
        assert [number for number, text in parsed.malformed] == [1, 2, 3, 4]
        assert parsed.text == text

    def test_empty_file(self) -> None:
        parsed = parse_subid("")
        assert parsed.entries == () and parsed.lines == ()

    def test_entry_dict_round_trip(self) -> None:
        original = entry("alice", 100000, 65536, 7)
        assert original.to_dict() == {"owner": "alice", "start": 100000, "count": 65536, "line": 7}
        assert SubidEntry.from_dict(original.to_dict()) == original


class TestOverlap:
    @pytest.mark.parametrize(
        "start, count, expected",
        [
            (100000, 65536, True),   # same range
            (165535, 1, True),       # last ID
            (165536, 10, False),     # adjacent above
            (99999, 1, False),       # adjacent below
            (99999, 2, True),        # straddles the start
            (0, 10 ** 9, True),      # contains it
        ],
    )
    def test_overlaps(self, start: int, count: int, expected: bool) -> None:
        assert entry("a", 100000, 65536).overlaps(start, count) is expected


class TestFindFreeStart:
    def test_empty_file_starts_at_min_start(self) -> None:
        assert find_free_start([], 65536) == 100000

    def test_after_existing_ranges_like_useradd(self) -> None:
        entries = parse_subid(DEBIAN_STYLE).entries
        assert find_free_start(entries, 65536) == 231072

    def test_first_fit_in_a_gap(self) -> None:
        entries = [entry("a", 100000, 65536), entry("c", 296608, 65536)]
        assert find_free_start(entries, 65536) == 165536

    def test_gap_too_small_is_skipped(self) -> None:
        entries = [entry("a", 100000, 65536), entry("c", 200000, 65536)]
        assert find_free_start(entries, 65536) == 265536

    def test_ranges_below_min_start_do_not_matter(self) -> None:
        assert find_free_start([entry("a", 1000, 5000)], 65536, 100000) == 100000

    def test_range_straddling_min_start_pushes_up(self) -> None:
        assert find_free_start([entry("a", 90000, 20000)], 65536, 100000) == 110000

    def test_unsorted_and_overlapping_entries(self) -> None:
        entries = [entry("b", 150000, 100000), entry("a", 100000, 65536)]
        assert find_free_start(entries, 65536) == 250000

    def test_no_room_left(self) -> None:
        with pytest.raises(SubidConflictError):
            find_free_start([entry("a", 100000, 2 ** 32 - 100001)], 65536)


class TestUserRangeProblems:
    def test_single_good_range_by_name(self) -> None:
        entries = parse_subid(DEBIAN_STYLE).entries
        assert user_range_problems(entries, "alice", 1000, 65536, "/etc/subuid") == []

    def test_larger_range_is_fine(self) -> None:
        assert user_range_problems([entry("u7s", 100000, 131072)], "u7s", None, 65536, "/etc/subuid") == []

    def test_no_range_is_not_a_problem_here(self) -> None:
        assert user_range_problems([entry("bob", 100000, 65536)], "u7s", 1001, 65536, "/etc/subuid") == []

    def test_duplicate_by_name_and_uid(self) -> None:
        entries = parse_subid("u7s:100000:65536\nbob:165536:65536\n1001:231072:65536\n").entries
        problems = user_range_problems(entries, "u7s", 1001, 65536, "/etc/subuid")
        assert len(problems) == 1
        assert "/etc/subuid" in problems[0]
        assert "2 entries" in problems[0]
        assert "line 1 'u7s:100000:65536'" in problems[0]
        assert "line 3 '1001:231072:65536'" in problems[0]
        assert "Fix:" in problems[0]

    def test_uid_only_counts_when_known(self) -> None:
        entries = [entry("1001", 100000, 65536)]
        assert user_range_problems(entries, "u7s", None, 65536, "p") == []
        assert user_range_problems(entries + [entry("u7s", 165536, 65536, 2)], "u7s", None, 65536, "p") == []
        assert len(user_range_problems(entries + [entry("u7s", 165536, 65536, 2)], "u7s", 1001, 65536, "p")) == 1

    def test_too_small(self) -> None:
        problems = user_range_problems([entry("u7s", 100000, 1000)], "u7s", None, 65536, "/etc/subgid")
        assert len(problems) == 1
        assert "only 1000" in problems[0] and "65536" in problems[0] and "/etc/subgid" in problems[0]
        assert "Fix:" in problems[0]

    def test_overlap_names_both_lines(self) -> None:
        entries = [entry("bob", 100000, 65536, 1), entry("u7s", 150000, 65536, 2)]
        problems = user_range_problems(entries, "u7s", None, 65536, "/etc/subuid")
        assert len(problems) == 1
        assert "line 2 'u7s:150000:65536'" in problems[0]
        assert "line 1 'bob:100000:65536'" in problems[0]
        assert "Fix:" in problems[0]

    def test_too_small_and_overlapping_reports_both(self) -> None:
        entries = [entry("bob", 100000, 65536, 1), entry("u7s", 100000, 10, 2)]
        assert len(user_range_problems(entries, "u7s", None, 65536, "/etc/subuid")) == 2


class TestPlan:
    def test_allocates_and_appends_preserving_everything(self) -> None:
        plan = plan_subid("/etc/subuid", DEBIAN_STYLE, "u7s", 1001)
        assert plan.changed
        assert plan.range == SubidRange(231072, 65536)
        assert plan.after == DEBIAN_STYLE + "u7s:231072:65536\n"
        assert plan.before == DEBIAN_STYLE

    def test_missing_final_newline_is_added_before_the_new_line(self) -> None:
        plan = plan_subid("/etc/subuid", "bob:100000:65536", "u7s")
        assert plan.after == "bob:100000:65536\nu7s:165536:65536\n"

    def test_empty_file(self) -> None:
        plan = plan_subid("/etc/subuid", "", "u7s", count=65536, min_start=524288)
        assert plan.after == "u7s:524288:65536\n"
        assert plan.range.to_dict() == {"start": 524288, "count": 65536}

    def test_existing_range_by_uid_is_kept(self) -> None:
        text = "1001:300000:65536\n"
        plan = plan_subid("/etc/subuid", text, "u7s", 1001)
        assert not plan.changed
        assert plan.after == text
        assert plan.range == SubidRange(300000, 65536)

    def test_conflict_raises_and_names_the_file(self) -> None:
        with pytest.raises(SubidConflictError, match="/etc/subgid: user 'u7s' has 2 entries"):
            plan_subid("/etc/subgid", "u7s:100000:65536\nu7s:165536:65536\n", "u7s")

    def test_no_room_names_the_file(self) -> None:
        with pytest.raises(SubidConflictError, match="^/etc/subuid: No free range"):
            plan_subid("/etc/subuid", "", "u7s", min_start=2 ** 32 - 10)


def test_append_entry() -> None:
    assert append_entry("", "u7s", SubidRange(1, 65536)) == "u7s:1:65536\n"
    assert append_entry("# c\n", "u7s", SubidRange(1, 65536)) == "# c\nu7s:1:65536\n"


# --- the host's own IDs (issue 12, finding 7) -----------------------------------------------------

USERS = [{"name": "root", "id": 0}, {"name": "nobody", "id": 65534}, {"name": "alice", "id": 1001},
         {"name": "bob", "id": 1002}, {"name": "carol", "id": 1003}, {"name": "dave", "id": 1004},
         {"name": "svc", "id": 170000}]


class TestLoginDefs:
    def test_defaults_where_unset(self) -> None:
        values = subid.parse_login_defs("# comment\nUID_MIN 2000\nSUB_UID_MIN\t500000\nUMASK 022\nGID_MIN x\n")
        assert values["UID_MIN"] == 2000 and values["SUB_UID_MIN"] == 500000
        assert values["GID_MIN"] == 1000 and values["SYS_UID_MAX"] == 999 and "UMASK" not in values

    def test_system_limit_is_uid_min_or_past_sys_uid_max(self) -> None:
        assert subid.system_limit("subuid", None) == 1000
        assert subid.system_limit("subuid", {"UID_MIN": 500}) == 1000  # SYS_UID_MAX 999 still counts
        assert subid.system_limit("subgid", {"GID_MIN": 5000, "SYS_GID_MAX": 4999}) == 5000
        assert subid.subordinate_min("subgid", {"SUB_GID_MIN": 200000}) == 200000


class TestAllocatorKeepsClearOfRealIds:
    def test_skips_an_account_inside_the_first_free_range(self) -> None:
        reserved = subid.reserved_ranges("subuid", None, [{"name": "svc", "id": 120000}])
        assert find_free_start([], 65536, 100000, reserved) == 120001

    def test_never_starts_in_the_system_range(self) -> None:
        reserved = subid.reserved_ranges("subuid", {"UID_MIN": 1000}, [])
        assert find_free_start([], 65536, 1, reserved) == 1000

    def test_plan_allocates_clear_of_accounts_and_entries(self) -> None:
        plan = plan_subid("/etc/subuid", "alice:100000:65536\n", "u7s", 1005, min_start=100000,
                          kind="subuid", accounts=USERS)
        # 165536..231071 holds svc (170000): the next free start is past it.
        assert plan.range == SubidRange(170001, 65536)

    def test_plan_refuses_a_recorded_range_over_accounts(self) -> None:
        with pytest.raises(SubidConflictError) as raised:
            plan_subid("/etc/subuid", "u7s:1000:65536\n", "u7s", 1005, kind="subuid", accounts=USERS)
        assert "line 1 'u7s:1000:65536'" in str(raised.value) and "Fix:" in str(raised.value)

    def test_without_kind_the_old_behaviour_stays(self) -> None:
        assert plan_subid("/etc/subuid", "u7s:1000:65536\n", "u7s", 1005).changed is False


class TestAccountRangeProblems:
    def problems(self, text: str, kind: str = "subuid", accounts=None, host: str | None = "h1") -> list[str]:
        entries = list(parse_subid(text).entries)
        return subid.account_range_problems(entries, "u7s", 1005, 65536, "/etc/%s" % kind, kind, None,
                                            USERS if accounts is None else accounts, host)

    def test_a_range_from_1000_takes_in_the_system_range_and_accounts(self) -> None:
        (problem,) = self.problems("other:100000:65536\nu7s:1000:65536\n")
        assert problem.startswith("Host h1: /etc/subuid line 2 'u7s:1000:65536' gives user 'u7s' "
                                  "the subordinate UIDs 1000-66535")
        assert "system UIDs" not in problem  # UID_MIN itself is the first non-system UID
        assert "which take in the UIDs of the accounts alice (1001), bob (1002), carol (1003) and 2 more" in problem  # dave, nobody
        assert "Fix: while the user runs no containers on this host, replace that line by u7s:170001:65536" in problem
        assert "a node already running on the old range keeps it" in problem

    def test_a_range_from_500_takes_in_both(self) -> None:
        (problem,) = self.problems("u7s:500:65536\n")
        assert ("which take in the system UIDs 0-999 (below UID_MIN 1000, /etc/login.defs) and the UIDs of the "
                "accounts alice (1001)") in problem

    def test_a_range_in_the_system_range_only(self) -> None:
        (problem,) = self.problems("u7s:10:500\n", accounts=[])
        assert "the subordinate UIDs 10-509, which take in the system UIDs 0-999" in problem
        assert "accounts" not in problem.split("Fix:")[0]

    def test_one_account_is_named_alone(self) -> None:
        (problem,) = self.problems("u7s:169000:65536\n")
        assert "the UIDs of the account svc (170000)," in problem

    def test_groups_for_subgid(self) -> None:
        (problem,) = self.problems("u7s:300000:65536\n", "subgid", [{"name": "docker", "id": 300100}])
        assert "/etc/subgid line 1" in problem and "subordinate GIDs 300000-365535" in problem
        assert "the GIDs of the group docker (300100)" in problem and "every group" in problem

    def test_clear_ranges_and_other_cases_are_fine(self) -> None:
        assert self.problems("u7s:200000:65536\n") == []
        assert self.problems("alice:1000:65536\n") == []  # another user's range is not the cluster user's
        assert self.problems("u7s:200000:65536\nu7s:300000:65536\n") == []  # duplicates: user_range_problems
        assert self.problems("u7s:1000:0\n", accounts=[]) == []  # an empty range takes in nothing

    def test_without_a_host_the_message_starts_with_the_file(self) -> None:
        (problem,) = self.problems("u7s:1000:65536\n", host=None)
        assert problem.startswith("/etc/subuid line 1")
