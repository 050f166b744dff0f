# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The u7s.cluster.subid module end to end, on temporary files."""

from __future__ import annotations

import os
import stat
import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.modules import subid as subid_module

USER = "u7s-unit-test-user"


@pytest.fixture
def paths(tmp_path: t.Any) -> dict[str, str]:
    return {"subuid_path": str(tmp_path / "subuid"), "subgid_path": str(tmp_path / "subgid")}


@pytest.fixture(autouse=True)
def user_uid(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pretend the user exists with uid 1001."""
    monkeypatch.setattr(subid_module, "lookup_uid", lambda user: 1001 if user == USER else None)
    return 1001


@pytest.fixture
def run(run_module: t.Callable[..., dict[str, t.Any]]) -> t.Callable[..., dict[str, t.Any]]:
    return lambda args: run_module(subid_module.main, args)


def write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_allocates_in_missing_files_then_is_idempotent(paths, run) -> None:
    result = run(dict(user=USER, **paths))
    assert result["changed"] is True
    assert result["subuid"] == {"start": 100000, "count": 65536}
    assert result["subgid"] == {"start": 100000, "count": 65536}
    assert read(paths["subuid_path"]) == "%s:100000:65536\n" % USER
    assert read(paths["subgid_path"]) == "%s:100000:65536\n" % USER

    again = run(dict(user=USER, **paths))
    assert again["changed"] is False
    assert again["subuid"] == {"start": 100000, "count": 65536}
    assert read(paths["subuid_path"]) == "%s:100000:65536\n" % USER


def test_appends_after_other_users_and_keeps_comments_and_mode(paths, run) -> None:
    existing = "# keep me\nalice:100000:65536\n\nbob:165536:65536\n"
    write(paths["subuid_path"], existing, 0o600)
    write(paths["subgid_path"], "alice:100000:65536\n")
    result = run(dict(user=USER, **paths))
    assert result["changed"] is True
    assert result["subuid"]["start"] == 231072
    assert result["subgid"]["start"] == 165536
    assert read(paths["subuid_path"]) == existing + "%s:231072:65536\n" % USER
    assert stat.S_IMODE(os.stat(paths["subuid_path"]).st_mode) == 0o600
    # No temporary files are left behind.
    assert sorted(os.listdir(os.path.dirname(paths["subuid_path"]))) == ["subgid", "subuid"]


def test_check_mode_reports_but_writes_nothing(paths, run) -> None:
    write(paths["subgid_path"], "alice:100000:65536\n")
    args = dict(user=USER, _ansible_check_mode=True, _ansible_diff=True, **paths)
    result = run(args)
    assert result["changed"] is True
    assert result["subuid"] == {"start": 100000, "count": 65536}
    assert result["subgid"] == {"start": 165536, "count": 65536}
    assert not os.path.exists(paths["subuid_path"])
    assert read(paths["subgid_path"]) == "alice:100000:65536\n"
    diffs = {diff["after_header"]: diff for diff in result["diff"]}
    assert diffs[paths["subgid_path"]]["before"] == "alice:100000:65536\n"
    assert diffs[paths["subgid_path"]]["after"] == "alice:100000:65536\n%s:165536:65536\n" % USER
    assert diffs[paths["subuid_path"]]["before"] == ""


def test_existing_range_named_by_uid_is_accepted(paths, run, user_uid) -> None:
    write(paths["subuid_path"], "%d:300000:65536\n" % user_uid)
    write(paths["subgid_path"], "%s:300000:70000\n" % USER)
    result = run(dict(user=USER, **paths))
    assert result["changed"] is False
    assert result["subuid"] == {"start": 300000, "count": 65536}
    assert result["subgid"] == {"start": 300000, "count": 70000}


@pytest.mark.parametrize(
    "subgid_text, expected",
    [
        ("%s:100000:65536\n1001:200000:65536\n" % USER, "has 2 entries"),
        ("%s:100000:1000\n" % USER, "only 1000 subordinate IDs"),
        ("bob:100000:65536\n%s:120000:65536\n" % USER, "overlaps line 1 'bob:100000:65536'"),
    ],
    ids=["duplicate", "too-small", "overlap"],
)
def test_conflicts_fail_and_leave_both_files_byte_identical(paths, run, subgid_text, expected) -> None:
    # subuid alone would need a new line: it must not be written either.
    write(paths["subuid_path"], "# only a comment\n")
    write(paths["subgid_path"], subgid_text)
    result = run(dict(user=USER, **paths))
    assert result["failed"] is True
    assert expected in result["msg"]
    assert paths["subgid_path"] in result["msg"]
    assert "Fix:" in result["msg"]
    assert read(paths["subuid_path"]) == "# only a comment\n"
    assert read(paths["subgid_path"]) == subgid_text


def test_count_below_minimum_is_refused(paths, run) -> None:
    result = run(dict(user=USER, count=1000, **paths))
    assert result["failed"] is True
    assert "count must be at least 65536" in result["msg"]
    assert not os.path.exists(paths["subuid_path"])


def test_custom_count_and_min_start(paths, run) -> None:
    result = run(dict(user=USER, count=131072, min_start=1000000, **paths))
    assert result["subuid"] == {"start": 1000000, "count": 131072}
    assert read(paths["subgid_path"]) == "%s:1000000:131072\n" % USER


def test_malformed_lines_warn_and_stay(paths, run, module_warnings) -> None:
    write(paths["subuid_path"], "this is not an entry\n")
    result = run(dict(user=USER, **paths))
    assert result["changed"] is True
    assert module_warnings == ["%s line 1 is not owner:start:count and is ignored: 'this is not an entry'" % paths["subuid_path"]]
    assert read(paths["subuid_path"]) == "this is not an entry\n%s:100000:65536\n" % USER


def test_allocation_keeps_clear_of_accounts_and_login_defs(paths, run, monkeypatch) -> None:
    """An account at 100000 and a group at 200100: the ranges start past them (issue 12, finding 7)."""
    monkeypatch.setattr(subid_module, "read_accounts", lambda: {
        "users": [{"name": "root", "id": 0}, {"name": "svc", "id": 100000}],
        "groups": [{"name": "root", "id": 0}, {"name": "grp", "id": 200100}]})
    monkeypatch.setattr(subid_module, "read_login_defs",
                        lambda: {"UID_MIN": 1000, "GID_MIN": 1000, "SUB_UID_MIN": 100000, "SUB_GID_MIN": 200000})
    result = run(dict(user=USER, **paths))
    assert result["subuid"] == {"start": 100001, "count": 65536}
    assert result["subgid"] == {"start": 200101, "count": 65536}


def test_a_recorded_range_over_an_account_is_refused(paths, run, monkeypatch) -> None:
    monkeypatch.setattr(subid_module, "read_accounts", lambda: {
        "users": [{"name": "alice", "id": 1002}], "groups": []})
    write(paths["subuid_path"], "%s:1000:65536\n" % USER)
    result = run(dict(user=USER, **paths))
    assert result["failed"] is True
    assert "the account alice (1002)" in result["msg"] and "Fix:" in result["msg"]
    assert read(paths["subuid_path"]) == "%s:1000:65536\n" % USER
    assert not os.path.exists(paths["subgid_path"])
