#!/usr/bin/env bash
# `molecule test -s SCENARIO` with its whole output kept in .build/logs/molecule-SCENARIO.log and,
# when it fails, the checks that failed printed last: CI shows only the end of a run's output,
# which is otherwise molecule's destroy step and recap.
set -euo pipefail
scenario=${1:?usage: tests/molecule-test.sh SCENARIO}
cd "$(dirname "$0")/.."
mkdir -p .build/logs
log=.build/logs/molecule-$scenario.log
started=$SECONDS
rc=0
# Wide lines: molecule and pytest wrap at the terminal's width, which would split a failed task's
# message over lines that the summary below cannot find.
COLUMNS=${U7S_MOLECULE_COLUMNS:-400} molecule test --scenario-name "$scenario" 2>&1 | tee "$log" || rc=$?
echo "molecule test -s $scenario: rc $rc in $((SECONDS - started)) s (whole output: $log)"
if [ "$rc" -ne 0 ]; then
    # Without colour and molecule's box frame: pytest's summary of what failed, else the failed tasks.
    # (The frame is matched as a string, not in a bracket: it is 3 bytes wherever no UTF-8 locale is set.)
    plain=$(sed -E -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *(│|\|) ?//' "$log")
    summary=$(sed -n '/short test summary info/,/ passed\| failed\| error/p' <<<"$plain")
    echo "---- what failed in scenario $scenario ----"
    if [ -n "$summary" ]; then
        # The assertions and the failed tasks (once each), then pytest's summary.
        grep -E '^E +(assert |AssertionError|Failed:)|fatal: \[|FAILED! =>' <<<"$plain" | cut -c1-1500 \
            | awk '!seen[$0]++' | tail -20 || true
        echo "$summary"
    else
        grep -E -A12 '^(fatal|failed):|FAILED!' <<<"$plain" | tail -60 || true
    fi
fi
exit "$rc"
