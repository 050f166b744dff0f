"""tests/molecule-test.sh: a failed scenario ends its output with what failed (CI shows only the end)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# What molecule prints around a failed verifier: colour, its box frame, then the destroy step.
FAILED_RUN = r"""
printf '  \033[2m\342\224\202\033[0m ../tests/test_x.py::test_a FAILED\n'
printf '  \033[2m\342\224\202\033[0m E   assert 1 == 2\n'
printf '  \033[2m\342\224\202\033[0m E         TASK [u7s.cluster.node : Run the node container]\n'
printf '  \033[2m\342\224\202\033[0m E         fatal: [host3]: FAILED! => {"stderr": "port is already allocated"}\n'
printf '  \033[2m\342\224\202\033[0m E         fatal: [host3]: FAILED! => {"stderr": "port is already allocated"}\n'
printf '  \033[2m\342\224\202\033[0m ======== short test summary info ========\n'
printf '  \033[2m\342\224\202\033[0m FAILED ../tests/test_x.py::test_a - assert 1 == 2\n'
printf '  \033[2m\342\224\202\033[0m ======== 1 failed, 3 passed in 2.00s ========\n'
printf 'INFO destroy: Executed: Successful\n'
exit 1
"""
FAILED_PLAY = r"""
printf 'TASK [u7s.cluster.node : Run the node container]\n'
printf 'fatal: [host2]: FAILED! => {"msg": "no space left"}\n'
printf 'INFO destroy: Executed: Successful\n'
exit 2
"""


def run(tmp_path: Path, molecule_body: str) -> subprocess.CompletedProcess:
    (tmp_path / "tests").mkdir()
    shutil.copy(REPO / "tests/molecule-test.sh", tmp_path / "tests/molecule-test.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "molecule"
    fake.write_text("#!/bin/sh\n" + molecule_body)
    fake.chmod(0o755)
    return subprocess.run(["bash", str(tmp_path / "tests/molecule-test.sh"), "x"], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=False)


def test_a_failed_check_is_printed_last(tmp_path):
    result = run(tmp_path, FAILED_RUN)
    assert result.returncode == 1
    tail = result.stdout[result.stdout.index("---- what failed in scenario x ----"):].splitlines()
    assert tail[1:] == ["E   assert 1 == 2",
                        'E         fatal: [host3]: FAILED! => {"stderr": "port is already allocated"}',
                        "======== short test summary info ========",
                        "FAILED ../tests/test_x.py::test_a - assert 1 == 2",
                        "======== 1 failed, 3 passed in 2.00s ========"]
    assert (tmp_path / ".build/logs/molecule-x.log").read_text().count("test_a") == 2


def test_a_failed_task_is_printed_last_when_no_check_ran(tmp_path):
    result = run(tmp_path, FAILED_PLAY)
    assert result.returncode == 2
    assert result.stdout.rstrip().endswith('fatal: [host2]: FAILED! => {"msg": "no space left"}\n'
                                           "INFO destroy: Executed: Successful")


def test_a_passing_scenario_prints_no_failure(tmp_path):
    result = run(tmp_path, "echo all passed\nexit 0\n")
    assert result.returncode == 0
    assert "what failed" not in result.stdout
    assert "molecule test -s x: rc 0" in result.stdout
