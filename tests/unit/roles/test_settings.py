# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The settings role: every cluster-wide setting declared and defaulted once, and read by every role from there.

The other roles' own rendering and tasks: test_flannel.py, test_kubeadm.py,
test_node_image.py, test_node_role.py; the checks on the settings: test_cluster_model.py.
"""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from jinja2 import Environment, meta

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import (
    CONTROLLER_SETTINGS,
    HOST_SETTINGS,
    NODE_PORTS,
    RENAMED,
)
from cluster_inventory import plan_of, settings_defaults, settings_spec
from rendering import (
    all_tasks,
    CONTAINER_MODULES,
    REPO,
    ROLES,
    evaluate,
    extra_args,
    flannel_config_file,
    kubeadm_init_config,
    load_tasks,
    load_vars,
    node_container,
    node_variables,
    render_role_template,
    role_on_host,
    role_variables,
    task_named,
    template,
    versions_env,
)

SETTINGS = ROLES / "settings"
OTHER_ROLES = sorted(path.name for path in ROLES.iterdir() if path.is_dir() and path.name != "settings")
# Set per run, not in the inventory: see rendering.role_variables.
INVENTORY_DIR = "/srv/inventory"
# The settings whose default values are distinctive enough to find in a file.
LITERAL_SETTINGS = ("u7s_kubernetes_version", "u7s_pod_cidr", "u7s_service_cidr", "u7s_dns_domain",
                    "u7s_node_subnet_pool", *(setting for setting, _protocol in NODE_PORTS))


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


# --- (a) declared once, defaulted once ---------------------------------------------------------------

def test_the_defaults_are_the_documented_settings():
    assert set(settings_defaults()) == set(settings_spec())


@pytest.mark.parametrize("name", sorted(set(settings_spec()) - {"u7s_kubeconfig"}))
def test_each_documented_default_is_the_defaults_file_value(name):
    option = settings_spec()[name]
    assert "default" in option, name
    assert option["default"] == settings_defaults()[name]
    assert type(option["default"]) is type(settings_defaults()[name])


def test_the_kubeconfig_default_is_documented_as_it_renders():
    """A template in defaults/main.yml; its documentation says what it renders to."""
    assert settings_spec()["u7s_kubeconfig"]["default"] == "<inventory_dir>/artifacts/kubeconfig"
    assert "{{" in settings_defaults()["u7s_kubeconfig"]
    rendered = evaluate("u7s_kubeconfig", role_variables("settings"))
    assert rendered == settings_spec()["u7s_kubeconfig"]["default"].replace("<inventory_dir>", INVENTORY_DIR)
    assert rendered == "/srv/inventory/artifacts/kubeconfig"


def test_the_defaults_pass_their_own_spec():
    defaults = {name: value for name, value in settings_defaults().items() if name not in CONTROLLER_SETTINGS}
    spec = {name: option for name, option in settings_spec().items() if name not in CONTROLLER_SETTINGS}
    result = ArgumentSpecValidator(spec).validate(defaults)
    assert result.error_messages == []
    assert result.validated_parameters == defaults


def test_the_defaults_make_a_working_cluster():
    assert plan_of()["problems"] == []


def test_derived_values_are_no_settings():
    derived = load_vars(SETTINGS / "vars/main.yml")
    assert set(derived) == {"u7s_node_image", "u7s_node_state_path", "settings_node", "u7s_registration_taint",
                            "settings_registry_generated_ca", "settings_registry_generated_ca_key"}
    assert not set(derived) & set(settings_spec())


def test_the_default_kubernetes_version_is_the_offline_bundles():
    assert settings_defaults()["u7s_kubernetes_version"] == versions_env()["K8S_VERSION"]


def test_host_settings_are_documented_as_per_host():
    description = " ".join(yaml.safe_load((SETTINGS / "meta/argument_specs.yml").read_text())
                           ["argument_specs"]["settings"]["description"])
    for name in HOST_SETTINGS:
        assert "C(%s)" % name in description, name


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_every_role_depends_on_the_settings(role):
    dependencies = yaml.safe_load((ROLES / role / "meta/main.yml").read_text())["dependencies"]
    assert {"role": "u7s.cluster.settings"} in dependencies


def entry_points() -> list[tuple[str, str]]:
    found = []
    for role in OTHER_ROLES:
        path = ROLES / role / "meta/argument_specs.yml"
        if path.exists():
            found += [(role, entry) for entry in yaml.safe_load(path.read_text())["argument_specs"]]
    return found


@pytest.mark.parametrize(("role", "entry_point"), entry_points())
def test_every_roles_documented_defaults_are_its_defaults(role, entry_point):
    """Each option's documented default is what the role's defaults give (as the flannel and node tests checked)."""
    options = yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())["argument_specs"][entry_point]
    options = options.get("options") or {}
    variables = role_variables(role)
    for name, option in options.items():
        if "default" in option:
            assert evaluate(name, variables) == option["default"], name
    defaults = ROLES / role / "defaults/main.yml"
    if entry_point == "main":
        # Defaults only other entry points take (certs, etcd-backup, ...) are documented there.
        elsewhere = {name for other, spec in yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())
                     ["argument_specs"].items() if other not in ("main", "preflight")
                     for name in (spec.get("options") or {})}
        assert set(options) == set(load_vars(defaults) if defaults.exists() else {}) - (elsewhere - set(options))
    assert not set(options) & set(settings_spec()), "settings are documented by the settings role only"


# --- (b) no role keeps a default of its own ------------------------------------------------------------

def literal_pattern(value: str) -> re.Pattern[str]:
    """VALUE standing alone: not inside a longer number, name or address."""
    return re.compile(r"(?<![\w.:/-])%s(?![\w/-]|\.\d)" % re.escape(value))


def literals_in(data: t.Any, values: t.Sequence[str], path: str = "") -> list[tuple[str, str, str]]:
    """(path, 'key' or 'value', value) for each key or scalar of DATA in which one of VALUES stands alone."""
    found = []
    if isinstance(data, dict):
        for key, item in data.items():
            found += [(path + "/" + str(key), "key", value) for value in values
                      if literal_pattern(value).search(str(key))]
            found += literals_in(item, values, path + "/" + str(key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found += literals_in(item, values, "%s[%d]" % (path, index))
    elif data is not None:
        found += [(path, "value", value) for value in values if literal_pattern(value).search(str(data))]
    return found


def test_no_other_role_defaults_a_setting_again():
    values = [str(settings_defaults()[name]) for name in LITERAL_SETTINGS]
    found = []
    for role in OTHER_ROLES:
        for folder in ("defaults", "vars"):
            for path in sorted((ROLES / role / folder).glob("*.yml")):
                found += [(relative(path), *hit) for hit in literals_in(yaml.safe_load(path.read_text()), values)]
    # The one mention: kind's node image digest is pinned per Kubernetes version, the version as its key.
    version = settings_defaults()["u7s_kubernetes_version"]
    assert found == [("roles/node_image/vars/main.yml", "/node_image_kindest_digests/" + version, "key", version)]


def test_the_literal_search_finds_a_default_written_again():
    """The search above is not vacuous: it finds each value where a role would repeat it."""
    values = [str(settings_defaults()[name]) for name in LITERAL_SETTINGS]
    for value in values:
        assert literals_in({"x_port": "{{ p | default(%s) }}" % value}, [value]) == [("/x_port", "value", value)]
    assert literals_in({"a": "10.244.0.0/160", "b": "16443", "c": "v1.36.45", "d": "sub.cluster.local.x"},
                       values) == []


def role_files() -> list[Path]:
    return sorted(path for path in ROLES.rglob("*") if path.is_file())


def test_no_role_file_defaults_a_setting_in_an_expression():
    settings = "|".join(sorted(settings_spec()))
    setting_default = re.compile(r"\b(%s)\s*\|\s*default\(" % settings)
    user_default = re.compile(r"\|\s*default\(\s*['\"]u7s['\"]\s*\)")
    found = []
    for path in role_files():
        text = path.read_text(errors="replace")
        found += [(relative(path), match.group(0)) for pattern in (setting_default, user_default)
                  for match in pattern.finditer(text)]
        if "u7s_user | default(" in text:
            found.append((relative(path), "u7s_user | default("))
    assert found == []


# --- (c) the names of earlier releases are gone ---------------------------------------------------------

class _AnyName(dict):
    """Filters and tests of any name: the search reads the templates' variables, it runs nothing."""

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: str, default: t.Any = None) -> t.Any:
        return dict.get(self, key) or (lambda value, *args, **kwargs: value)


JINJA = Environment()
JINJA.filters = _AnyName(JINJA.filters)
JINJA.tests = _AnyName(JINJA.tests)
# Task keywords whose values are bare Jinja expressions.
CONDITIONALS = {"when", "that", "failed_when", "changed_when", "until"}


def jinja_names(text: str, bare: bool = False) -> set[str]:
    """The variables a template (or a bare expression) reads."""
    return set(meta.find_undeclared_variables(JINJA.parse("{{ %s }}" % text if bare else text)))


def yaml_names(data: t.Any, parent: str = "", top: bool = False) -> set[str]:
    """Variables a role's YAML defines (defaults, vars, set_fact, register, options) or reads (templates, conditions)."""
    names: set[str] = set()
    if isinstance(data, dict):
        if top or parent in {"vars", "ansible.builtin.set_fact", "set_fact", "options"}:
            names |= {key for key in data if isinstance(key, str)}
        for key, item in data.items():
            names |= yaml_names(item, key)
    elif isinstance(data, list):
        for item in data:
            names |= yaml_names(item, parent)
    elif isinstance(data, str):
        if parent in CONDITIONALS:
            names |= jinja_names(data, bare=True)
        elif parent in {"register", "loop_var"}:
            names.add(data)
        elif "{{" in data or "{%" in data:
            names |= jinja_names(data)
    return names


def variables_of_roles() -> dict[str, set[str]]:
    """Every variable name each role file defines or reads."""
    found = {}
    for path in role_files():
        if path.suffix in {".yml", ".yaml"}:
            top = path.parent.name in {"defaults", "vars"}
            found[relative(path)] = yaml_names(yaml.safe_load(path.read_text()), top=top)
        elif path.suffix == ".j2":
            found[relative(path)] = jinja_names(path.read_text())
    return found


def test_the_variable_search_sees_what_the_roles_use():
    used = set().union(*variables_of_roles().values())
    assert {"u7s_kubeconfig", "u7s_port_vxlan", "settings_node", "settings_plan", "node_facts",
            "rootless_runtime_session", "kubeadm_join", "kubeadm_exec_argv",
            "flannel_net_conf", "external_ip_taints_cleared", "node_image_base_version"} <= used
    assert "node_host_ip" in yaml_names({"when": "node_host_ip | length > 0"})
    assert "node_image" in jinja_names("FROM {{ node_image }}")
    assert "node_image" not in yaml_names({"name": "u7s.cluster.node_image", "role_name": "node_image"})


def test_no_role_uses_a_renamed_variable():
    found = {path: sorted(names & set(RENAMED)) for path, names in variables_of_roles().items() if names & set(RENAMED)}
    assert found == {}


def test_every_renamed_variable_names_a_declared_setting():
    spec = settings_spec()
    assert {old: new for old, new in RENAMED.items() if new not in spec} == {}
    assert not set(RENAMED) & set(spec)
    assert HOST_SETTINGS <= set(spec) and CONTROLLER_SETTINGS <= set(spec)


def test_every_u7s_variable_a_role_uses_is_a_setting():
    known = set(settings_spec()) | set(load_vars(SETTINGS / "vars/main.yml"))
    found = {path: sorted(name for name in names if name.startswith("u7s_") and name not in known)
             for path, names in variables_of_roles().items()}
    assert {path: names for path, names in found.items() if names} == {}


# --- (d) one Kubernetes version -----------------------------------------------------------------------

NEXT = "v1.37.0"
NEXT_VERSION = {"u7s_kubernetes_version": NEXT, "node_image_base": "localhost/u7s/node-base:" + NEXT}


def test_the_next_version_is_a_version_the_plan_accepts():
    assert plan_of(NEXT_VERSION)["problems"] == []


def test_the_node_image_is_tagged_with_the_version():
    assert evaluate("u7s_node_image", role_variables("node_image", NEXT_VERSION)) == "localhost/u7s/node:" + NEXT


def node_image_dockerfile(inventory: dict) -> str:
    return render_role_template("node_image", "Dockerfile.j2", role_variables(
        "node_image", inventory, facts={"ansible_facts": {"architecture": "x86_64", "env": {"HOME": "/root"}}}))


def test_the_dockerfile_builds_from_and_labels_the_version():
    dockerfile = node_image_dockerfile(NEXT_VERSION)
    assert "\nFROM localhost/u7s/node-base:%s\n" % NEXT in dockerfile
    assert '\nLABEL io.u7s.kubernetes-version="%s"\n' % NEXT in dockerfile


def test_without_a_base_the_version_needs_a_kindest_pin():
    """No kind image is pinned for the next version: the Dockerfile cannot be rendered without a base."""
    assert NEXT not in load_vars(ROLES / "node_image/vars/main.yml")["node_image_kindest_digests"]
    with pytest.raises(AnsibleError):
        node_image_dockerfile({"u7s_kubernetes_version": NEXT})


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_node_container_runs_the_versions_image(engine):
    inventory = {**NEXT_VERSION, "u7s_engine": engine}
    module, _ports = CONTAINER_MODULES[engine]
    assert node_container(inventory)["image"] == "localhost/u7s/node:" + NEXT
    # Every task of the engine's file that names the image names this one.
    variables = node_variables(inventory)
    images = [template(arguments.get("image", arguments.get("name")), variables)
              for task in load_tasks("node", "container-%s.yml" % engine)
              for arguments in [task.get(key) for key in task if "." in key]
              if isinstance(arguments, dict) and "u7s_node_image" in str(arguments)]
    assert images and set(images) == {"localhost/u7s/node:" + NEXT}
    assert module in str(load_tasks("node", "container-%s.yml" % engine))


def test_kubeadm_configures_the_version():
    assert kubeadm_init_config(NEXT_VERSION)["ClusterConfiguration"]["kubernetesVersion"] == NEXT


# --- (e) a shared setting set once reaches every role ----------------------------------------------------

def published(inventory: dict, host: str = "host2") -> dict:
    return plan_of(inventory)["hosts"][host]


def test_the_kubelet_port():
    inventory = {"u7s_port_kubelet": 11250}
    assert kubeadm_init_config(inventory)["KubeletConfiguration"]["port"] == 11250
    node = published(inventory)
    assert {"port": 11250, "protocol": "tcp"} in node["published_ports"]
    assert node["port_names"]["11250/tcp"] == "u7s_port_kubelet"
    assert "192.0.2.12:11250:11250/tcp" in node_container(inventory, "host2")[CONTAINER_MODULES["docker"][1]]


@pytest.mark.parametrize("pod_cidr", ["10.244.0.0/16", "10.32.0.0/12"])
def test_the_pod_cidr(pod_cidr):
    inventory = {"u7s_pod_cidr": pod_cidr}
    assert kubeadm_init_config(inventory)["ClusterConfiguration"]["networking"]["podSubnet"] == pod_cidr
    assert flannel_config_file("net-conf.json", inventory)["Network"] == pod_cidr


def test_the_vxlan_port():
    inventory = {"u7s_port_vxlan": 18472}
    assert flannel_config_file("net-conf.json", inventory)["Backend"]["Port"] == 18472
    node = published(inventory)
    assert {"port": 18472, "protocol": "udp"} in node["published_ports"]
    assert node["port_names"]["18472/udp"] == "u7s_port_vxlan"
    assert "192.0.2.11:18472:18472/udp" in node_container(inventory)[CONTAINER_MODULES["docker"][1]]


@pytest.mark.parametrize("engine", ["docker", "podman", "nerdctl"])
def test_every_port_is_published_under_the_number_kubeadm_and_flannel_use(engine):
    """The node publishes each port under the same number the cluster advertises it by."""
    inventory = {"u7s_port_etcd": 12379, "u7s_port_apiserver": 16443, "u7s_port_kubelet": 20250,
                 "u7s_port_vxlan": 18472, "u7s_engine": engine}
    kubeadm = kubeadm_init_config(inventory)
    etcd = extra_args(kubeadm["ClusterConfiguration"]["etcd"]["local"]["extraArgs"])["advertise-client-urls"]
    tcp = [int(etcd.rsplit(":", 1)[1]), kubeadm["InitConfiguration"]["localAPIEndpoint"]["bindPort"],
           kubeadm["KubeletConfiguration"]["port"]]
    vxlan = flannel_config_file("net-conf.json", inventory)["Backend"]["Port"]
    assert tcp == [12379, 16443, 20250] and vxlan == 18472
    # etcd stays in the node (nothing outside it needs etcd with one control plane).
    assert node_container(inventory)[CONTAINER_MODULES[engine][1]] == (
        ["192.0.2.11:%d:%d/tcp" % (port, port) for port in tcp[1:]] + ["192.0.2.11:%d:%d/udp" % (vxlan, vxlan)])
    assert kubeadm["ClusterConfiguration"]["controlPlaneEndpoint"] == "192.0.2.11:16443"


# Every task that reaches the API from the controller, and its kubeconfig argument.
KUBECONFIG_TASKS = [
    ("flannel", "main.yml", "Apply flannel", "kubernetes.core.k8s", "kubeconfig"),
    ("flannel", "main.yml", "Wait for flannel on every node", "kubernetes.core.k8s_info", "kubeconfig"),
    ("flannel", "main.yml", "Wait for every node to be Ready", "kubernetes.core.k8s_info", "kubeconfig"),
    ("external_ip", "main.yml", "Set the nodes' addresses from their hosts", "u7s.cluster.node_addresses",
     "kubeconfig"),
    ("kubeadm", "join.yml", "Get a join token and the discovery data from the API (once, only when a host must join)",
     "u7s.cluster.join_token", "kubeconfig"),
    ("kubeadm", "join.yml", "Ask the API whether it knows this node (a join that left its kubelet.conf but no marker)",
     "kubernetes.core.k8s_info", "kubeconfig"),
    ("kubeadm", "static-pods-back.yml", "Wait for every node to be Ready (the controller's kubeconfig)",
     "kubernetes.core.k8s_info", "kubeconfig"),
    ("kubeadm", "kubeconfig.yml", "Write the controller's kubeconfig (the API server by the control-plane endpoint)",
     "ansible.builtin.copy", "dest"),
    ("kubeadm", "certs.yml", "Check that the controller's kubeconfig reaches the renewed API server",
     "kubernetes.core.k8s_info", "kubeconfig"),
    ("kubeadm", "drain.yml", "Mark the node as drained by this playbook", "kubernetes.core.k8s", "kubeconfig"),
    ("kubeadm", "drain.yml", "Cordon and drain the node", "kubernetes.core.k8s_drain", "kubeconfig"),
    ("kubeadm", "upgrade-finish.yml", "Ask whether the upgrade drained the node", "kubernetes.core.k8s_info",
     "kubeconfig"),
    ("kubeadm", "uncordon.yml", "Wait for the node to be Ready at the new version", "kubernetes.core.k8s_info",
     "kubeconfig"),
    ("kubeadm", "uncordon.yml", "Uncordon the node", "kubernetes.core.k8s_drain", "kubeconfig"),
    ("kubeadm", "uncordon.yml", "Forget that the upgrade drained it", "kubernetes.core.k8s", "kubeconfig"),
    ("kubeadm", "uncordon.yml", "Wait for the pods on the node", "kubernetes.core.k8s_info", "kubeconfig"),
    ("kubeadm", "remove.yml", "Ask the API for the node", "kubernetes.core.k8s_info", "kubeconfig"),
    ("kubeadm", "control-planes.yml", "Find the uploaded certificates", "kubernetes.core.k8s_info", "kubeconfig"),
    ("kubeadm", "control-planes.yml", "Delete the uploaded certificates and the token that owns them",
     "kubernetes.core.k8s", "kubeconfig"),
    ("kubeadm", "remove.yml", "Delete the Node", "kubernetes.core.k8s", "kubeconfig"),
    ("kubeadm", "reset.yml", "Remove the controller's kubeconfig with the control plane", "ansible.builtin.file", "path"),
]


@pytest.mark.parametrize(("inventory", "kubeconfig"), [
    ({}, "/srv/inventory/artifacts/kubeconfig"),
    ({"u7s_kubeconfig": "/etc/u7s/admin.conf"}, "/etc/u7s/admin.conf"),
], ids=["default", "set"])
@pytest.mark.parametrize(("role", "file", "task", "module", "argument"), KUBECONFIG_TASKS,
                         ids=["%s:%s" % (entry[0], entry[2][:24]) for entry in KUBECONFIG_TASKS])
def test_the_kubeconfig(inventory, kubeconfig, role, file, task, module, argument):
    arguments = task_named(role, file, task)[module]
    assert template(arguments[argument], role_on_host(role, inventory)) == kubeconfig


def test_every_task_that_takes_a_kubeconfig_is_checked():
    listed = {(role, file, task) for role, file, task, _module, argument in KUBECONFIG_TASKS if argument == "kubeconfig"}
    found = set()
    for role in OTHER_ROLES:
        for path in sorted((ROLES / role / "tasks").glob("*.yml")):
            for task in all_tasks(role, path.name):
                if any(isinstance(arguments, dict) and "kubeconfig" in arguments for arguments in task.values()):
                    found.add((role, path.name, task["name"]))
    assert found == listed
