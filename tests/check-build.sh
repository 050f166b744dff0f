#!/usr/bin/env bash
# Builds the collection tarball, installs it into a scratch path and renders
# the documentation of every module and filter from the installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/dist
install_dir=.build/installed
rm -rf "$out" "$install_dir"
mkdir -p "$out" "$install_dir"

ansible-galaxy collection build --force --output-path "$out" .
tarball=$(ls "$out"/u7s-cluster-*.tar.gz)
# Galaxy is out of reach here: the dependencies come from the ansible package.
export ANSIBLE_COLLECTIONS_PATH="$PWD/$install_dir"
ansible-galaxy collection install --force --no-deps -p "$install_dir" "$tarball"

list_plugins() {  # kind -> one FQCN a line
  ansible-doc -t "$1" --list u7s.cluster --json |
    python3 -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin))))'
}

modules=$(list_plugins module)
module_files=$(find plugins/modules -name '*.py' ! -name '__init__.py' | wc -l)
if [ "$(grep -c . <<<"$modules")" -ne "$module_files" ]; then
  echo "the installed collection lists $(grep -c . <<<"$modules") modules, plugins/modules holds $module_files" >&2
  exit 1
fi
filters=$(list_plugins filter)
for plugin in $modules; do ansible-doc -t module "$plugin" > /dev/null; done
for plugin in $filters; do ansible-doc -t filter "$plugin" > /dev/null; done
echo "installed from $tarball; docs render for:" "$modules" "$filters"
