"""The resource types kube-sim serves, and the discovery documents for them."""

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple = ()
    verbs: tuple = ALL_VERBS
    # "subdomain" (RFC 1123, 253), "label" (RFC 1123, 63) or "path" (no / or %).
    name_rule: str = "subdomain"
    subresources: tuple = field(default=())

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self):
        return self.kind.lower()

    @property
    def list_kind(self):
        return self.kind + "List"

    @property
    def qualified_plural(self):
        """How kube-apiserver names the resource in messages: pods, leases.coordination.k8s.io."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def categories(self):
        return ["all"] if self.plural == "pods" else []


CORE = [
    ResourceType("", "v1", "Pod", "pods", True, ("po",), subresources=("status", "log")),
    ResourceType("", "v1", "Event", "events", True, ("ev",)),
    ResourceType("", "v1", "Namespace", "namespaces", False, ("ns",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                 name_rule="label", subresources=("status",)),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    ResourceType("", "v1", "Secret", "secrets", True),
]
COORDINATION = [
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
]
RBAC = [
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True, name_rule="path"),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True,
                 name_rule="path"),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False,
                 name_rule="path"),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
                 False, name_rule="path"),
]
ALL = CORE + COORDINATION + RBAC

GROUPS = {
    "coordination.k8s.io": COORDINATION,
    "rbac.authorization.k8s.io": RBAC,
}


def find(group, version, plural):
    for rtype in ALL:
        if rtype.group == group and rtype.version == version and rtype.plural == plural:
            return rtype
    return None


def find_kind(api_version, kind):
    for rtype in ALL:
        if rtype.api_version == api_version and rtype.kind == kind:
            return rtype
    return None


def pods():
    return CORE[0]


def events():
    return CORE[1]


def namespaces():
    return CORE[2]


def leases():
    return COORDINATION[0]


def _resource_entries(types):
    entries = []
    for rtype in types:
        entry = {
            "name": rtype.plural,
            "singularName": rtype.singular,
            "namespaced": rtype.namespaced,
            "kind": rtype.kind,
            "verbs": list(rtype.verbs),
        }
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = rtype.categories
        entries.append(entry)
        for sub in rtype.subresources:
            entries.append({
                "name": f"{rtype.plural}/{sub}",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": "Pod" if sub == "log" else rtype.kind,
                "verbs": ["get"] if sub == "log" else ["get", "patch", "update"],
            })
    return entries


def core_versions(server_address):
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def resource_list(group, version):
    types = CORE if group == "" else GROUPS.get(group, [])
    if version != "v1" or not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": _resource_entries(types),
    }


def _group_entry(name):
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


def group_list():
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(name) for name in GROUPS],
    }


def group(name):
    if name not in GROUPS:
        return None
    entry = _group_entry(name)
    entry.update({"kind": "APIGroup", "apiVersion": "v1"})
    return entry
