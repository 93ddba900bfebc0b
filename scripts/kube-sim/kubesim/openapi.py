"""The OpenAPI v3 documents kubectl reads before create and apply.

kubectl looks, in /openapi/v3/<group-version>, for a PATCH operation tagged
with the object's x-kubernetes-group-version-kind that takes a
fieldValidation query parameter; finding one, it leaves validation to the
server (which kube-sim does in validation.py) instead of downloading schemas.
No requestBody is declared: with one, kubectl would try to compute strategic
merge patches from schemas we do not publish, instead of from its own types.
"""

from . import resources


def _group_version_path(group, version):
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index():
    versions = {(r.group, r.version) for r in resources.ALL}
    return {"paths": {
        _group_version_path(group, version): {
            "serverRelativeURL": "/openapi/v3/" + _group_version_path(group, version)
        }
        for group, version in sorted(versions)
    }}


def group_version_document(group, version):
    types = [r for r in resources.ALL if r.group == group and r.version == version]
    if not types:
        return None
    paths = {}
    for rtype in types:
        prefix = "/" + _group_version_path(group, version)
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        paths[f"{prefix}{scope}/{rtype.plural}/{{name}}"] = {"patch": {
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rtype.kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            ],
        }}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (kube-sim)", "version": "v1.32.0"},
            "paths": paths}


def document(path, query):
    parts = path.strip("/").split("/")
    if parts == ["openapi", "v3"]:
        return index()
    if parts[:3] == ["openapi", "v3", "api"] and len(parts) == 4:
        return group_version_document("", parts[3])
    if parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5:
        return group_version_document(parts[3], parts[4])
    return None  # /openapi/v2 is not served: kubectl then skips what it wanted it for
