"""Authentication by static bearer tokens, authorization by RBAC.

Tokens come from a file in kube-apiserver's --token-auth-file format:
    token,user,uid,"group1,group2"
RBAC is evaluated from the Role, RoleBinding, ClusterRole and
ClusterRoleBinding objects stored in the API (applied with kubectl like any
manifest), with kube-apiserver's rules and its 403 message. Members of
system:masters are allowed everything, as in a real cluster.
"""

import csv
import hmac
import json
import secrets
import threading
from dataclasses import dataclass

from . import errors, resources

MASTERS = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple


@dataclass(frozen=True)
class Request:
    verb: str
    rtype: object = None  # None for a non-resource URL
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    path: str = ""


def read_tokens(path):
    users = {}
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}: a token line needs at least token,user")
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
            users[row[0]] = User(row[1], groups + ("system:authenticated",))
    return users


def write_default_tokens(path, service_accounts):
    """An admin token plus one per service account (namespace, name)."""
    rows = [[secrets.token_hex(24), "kube-sim-admin", "kube-sim-admin", MASTERS]]
    for namespace, name in service_accounts:
        rows.append([
            secrets.token_hex(24),
            f"system:serviceaccount:{namespace}:{name}",
            f"sa-{namespace}-{name}",
            f"system:serviceaccounts,system:serviceaccounts:{namespace}",
        ])
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return rows


class Authenticator:
    def __init__(self, users):
        self._users = users

    def authenticate(self, authorization_header):
        if not authorization_header or not authorization_header.startswith("Bearer "):
            raise errors.unauthorized()
        presented = authorization_header[len("Bearer "):].strip()
        for token, user in self._users.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                return user
        raise errors.unauthorized()


def _subject_matches(subject, user):
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
    return False


def _rule_allows(rule, request):
    verbs = rule.get("verbs") or []
    if "*" not in verbs and request.verb not in verbs:
        return False
    if request.rtype is None:
        urls = rule.get("nonResourceURLs") or []
        return any(
            url == request.path or url == "*" or (url.endswith("*") and request.path.startswith(url[:-1]))
            for url in urls
        )
    groups = rule.get("apiGroups") or []
    if "*" not in groups and request.rtype.group not in groups:
        return False
    wanted = request.rtype.plural + (f"/{request.subresource}" if request.subresource else "")
    names = rule.get("resources") or []
    if not ("*" in names or wanted in names or (request.subresource and f"*/{request.subresource}" in names)):
        return False
    resource_names = rule.get("resourceNames") or []
    return not resource_names or request.name in resource_names


class AuditLog:
    """--audit-log FILE: one JSON line per authorization decision on a
    resource, {"user", "verb", "group", "resource", "subresource",
    "namespace", "name", "allowed"}, so that a test can compare what a
    client did with what its RBAC grants. Line-buffered; appends."""

    def __init__(self, path):
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, user, request, allowed):
        line = json.dumps({"user": user.name, "verb": request.verb, "group": request.rtype.group,
                           "resource": request.rtype.plural, "subresource": request.subresource,
                           "namespace": request.namespace, "name": request.name,
                           "allowed": allowed}, separators=(",", ":"))
        with self._lock:
            if not self._file.closed:  # a request still in flight at shutdown
                self._file.write(line + "\n")

    def close(self):
        with self._lock:
            self._file.close()


class Authorizer:
    def __init__(self, store, audit=None):
        self._store = store
        self._audit = audit

    def _rules_of(self, role_ref, namespace):
        kind = role_ref.get("kind")
        name = role_ref.get("name")
        if kind == "ClusterRole":
            rtype, ns = resources.find("rbac.authorization.k8s.io", "v1", "clusterroles"), ""
        elif kind == "Role":
            rtype, ns = resources.find("rbac.authorization.k8s.io", "v1", "roles"), namespace
        else:
            return []
        try:
            return self._store.get(rtype, ns, name).get("rules") or []
        except errors.ApiError:
            return []  # a binding to a missing role grants nothing, as in RBAC

    def allowed(self, user, request):
        if MASTERS in user.groups:
            return True
        if request.rtype is None and request.verb == "get":
            # system:discovery and system:public-info-viewer, bound to all
            # authenticated users in every cluster.
            return True
        bindings, _ = self._store.list(
            resources.find("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        )
        candidates = [(binding, "") for binding in bindings]
        if request.namespace:
            role_bindings, _ = self._store.list(
                resources.find("rbac.authorization.k8s.io", "v1", "rolebindings"), request.namespace
            )
            candidates += [(binding, request.namespace) for binding in role_bindings]
        for binding, namespace in candidates:
            if not any(_subject_matches(s, user) for s in binding.get("subjects") or []):
                continue
            for rule in self._rules_of(binding.get("roleRef") or {}, namespace):
                if _rule_allows(rule, request):
                    return True
        return False

    def check(self, user, request):
        allowed = self.allowed(user, request)
        if self._audit is not None and request.rtype is not None:
            self._audit.record(user, request, allowed)
        if allowed:
            return
        if request.rtype is None:
            raise errors.forbidden(
                f'forbidden: User "{user.name}" cannot {request.verb} path "{request.path}"'
            )
        rtype = request.rtype
        resource = rtype.plural + (f"/{request.subresource}" if request.subresource else "")
        what = f'{rtype.qualified_plural} "{request.name}"' if request.name else rtype.qualified_plural
        where = f'in the namespace "{request.namespace}"' if request.namespace else "at the cluster scope"
        raise errors.forbidden(
            f'{what} is forbidden: User "{user.name}" cannot {request.verb} resource '
            f'"{resource}" in API group "{rtype.group}" {where}',
            rtype,
            request.name,
        )
