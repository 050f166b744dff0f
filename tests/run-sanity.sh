#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection.
#
# ansible-test insists that the collection lives at
# .../ansible_collections/<namespace>/<name>, so the files the repository
# tracks (plus new, not ignored files, so work in progress counts) are copied
# into a fresh .build/sanity/ansible_collections/u7s/cluster on every run,
# which gets a repository of its own (see below).
# Each sanity test gets its own virtualenv (--venv) built from PyPI; no
# container images are needed.
#
# Usage: tests/run-sanity.sh [extra ansible-test sanity arguments]
#   e.g. tests/run-sanity.sh --test validate-modules
#        tests/run-sanity.sh plugins/ tests/unit/   (directories need the slash)
# Environment: PYTHON_VERSION (default 3.11), ANSIBLE_TEST (default: the one
# in the repository's .venv, else the one on PATH).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python_version=${PYTHON_VERSION:-3.11}
sanity_root="${repo_root}/.build/sanity"
collection_dir="${sanity_root}/ansible_collections/u7s/cluster"

if [[ -z "${ANSIBLE_TEST:-}" ]]; then
    if [[ -x "${repo_root}/.venv/bin/ansible-test" ]]; then
        ANSIBLE_TEST="${repo_root}/.venv/bin/ansible-test"
        # ansible-test runs helpers by name (python, ansible-doc, ...).
        export PATH="${repo_root}/.venv/bin:${PATH}"
    else
        ANSIBLE_TEST=ansible-test
    fi
fi

# --venv builds each virtualenv without pip and bootstraps pip with a
# get-pip.py that ansible-test downloads from a host outside the package
# registries. Unless a real one is cached, cache a stand-in that installs the
# pip bundled with Python (ensurepip) and then the requested pip from PyPI.
stand_in_marker='"""Stand-in for get-pip.py (written by u7s.cluster tests/run-sanity.sh)."""'
pip_version=$("${ANSIBLE_TEST%ansible-test}python" -c "
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version='${python_version}'))['pip'])
" 2>/dev/null || echo 24.2)
get_pip_cache="${HOME}/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [[ ! -s "${get_pip_cache}" ]] || grep -qxF "${stand_in_marker}" "${get_pip_cache}"; then
    mkdir -p "$(dirname "${get_pip_cache}")"
    {
        echo "${stand_in_marker}"
        cat <<'GET_PIP'
import ensurepip
import os
import subprocess
import sys

# ensurepip points PIP_CONFIG_FILE at /dev/null in this process; the follow-up
# install must see the machine's pip.conf (index, certificates) again.
environment = dict(os.environ)
# ensurepip's pip runs in a child process: silence its stdout at the fd level.
saved_stdout = os.dup(1)
with open(os.devnull, "w") as devnull:
    os.dup2(devnull.fileno(), 1)
    try:
        ensurepip.bootstrap(upgrade=True)
    finally:
        os.dup2(saved_stdout, 1)
# get-pip.py options that `pip install` does not know.
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet"] + args, env=environment))
GET_PIP
    } > "${get_pip_cache}"
fi

rm -rf "${sanity_root}"
mkdir -p "${collection_dir}"

cd "${repo_root}"
# Deleted-but-still-indexed files are skipped; tar keeps modes (executable
# bits matter to the shebang test).
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' path; do
        if [[ -f "${path}" && ! -L "${path}" ]]; then
            printf '%s\0' "${path}"
        fi
    done \
    | tar --null --files-from=- --create --file=- \
    | tar --extract --file=- --directory="${collection_dir}"

cd "${collection_dir}"
# ansible-test lists files through git when it finds a .git directory walking
# up from here; without a repository of its own it would find this checkout's,
# which ignores .build/, and skip every target.
git init -q .
# ...and ansible-test's own output (delegation virtualenv included) is no target.
echo '/tests/output/' >> .git/info/exclude
start=${SECONDS}
status=0
"${ANSIBLE_TEST}" sanity --venv --python "${python_version}" --color no "$@" || status=$?
echo "ansible-test sanity finished with exit code ${status} in $((SECONDS - start))s"
exit "${status}"
