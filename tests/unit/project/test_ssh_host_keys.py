"""SSH host keys are checked in production runs (issue 12, finding 3): only the test bed turns checking off."""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_projects_ansible_cfg_keeps_host_key_checking():
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "ansible.cfg")
    for section in config.sections():
        value = config.get(section, "host_key_checking", fallback="true").strip().lower()
        assert value not in ("false", "no", "0", "off"), f"ansible.cfg [{section}] turns host key checking off"


def test_only_the_test_beds_inventory_skips_host_key_checking():
    writer = (REPO / "testbed/testbed.sh").read_text()
    assert "StrictHostKeyChecking=no" in writer, "the test bed's inventory sets its own SSH options"
    for path in list(REPO.glob("inventories/*/group_vars/*.yml")) + list(REPO.glob("playbooks/*.yml")):
        text = path.read_text()
        assert "StrictHostKeyChecking=no" not in text and "host_key_checking" not in text, path
