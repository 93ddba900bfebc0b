"""PATCH of a pod's labels and annotations as the controller sends it (JSON
merge patch), with kube-apiserver's semantics: keys merged, null removes,
a resourceVersion in the patch is a precondition, selector watches see the
change as MODIFIED, ADDED or DELETED, values validated, the RBAC verb is
`patch`, and the status is the kubelet's whatever the patch says."""

import concurrent.futures
import json

import pytest

from cluster import pod_manifest, wait_for

NAMESPACE = "patch-test"
MERGE = "application/merge-patch+json"
MANAGED = "app.kubernetes.io/managed-by"
IDENTITY_HASH = "0123456789abcdef0123456789abcdef"
CONTROLLER = ("pod-router-system", "pod-router-controller")
GATEWAY = ("pod-router-system", "pod-router-gateway")
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
    "metadata": {"name": "pod-patcher"},
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}],
}
BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
    "metadata": {"name": "controller-patches"},
    "subjects": [{"kind": "ServiceAccount", "namespace": CONTROLLER[0], "name": CONTROLLER[1]}],
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-patcher"},
}


def path(name=""):
    return f"/api/v1/namespaces/{NAMESPACE}/pods" + (f"/{name}" if name else "")


@pytest.fixture(scope="module")
def namespace(cluster):
    assert cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})[0] == 201
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    assert cluster.request("POST", f"{rbac}/roles", ROLE)[0] == 201
    assert cluster.request("POST", f"{rbac}/rolebindings", BINDING)[0] == 201
    yield NAMESPACE
    cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def warm_pod(cluster, name):
    """A warm-pool pod, Ready, whose status the kubelet no longer changes."""
    manifest = pod_manifest(name, probe=False, labels={MANAGED: "pod-router", "pod-router.io/pool": "warm"})
    manifest["metadata"]["annotations"] = {"pod-router.io/template": "v1"}
    status, body = cluster.request("POST", path(), manifest)
    assert status == 201, body

    def ready():
        pod = cluster.request("GET", path(name))[1]
        conditions = pod.get("status", {}).get("conditions") or []
        return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

    return wait_for(ready, what=f"{name} Ready")


def claim(identity="alice"):
    return {"metadata": {"labels": {"pod-router.io/session": f"user-{identity}",
                                    "pod-router.io/identity-hash": IDENTITY_HASH},
                         "annotations": {"pod-router.io/identity": identity}}}


def patch(cluster, name, body, token=None, content_type=MERGE):
    return cluster.request("PATCH", path(name), body, token=token, content_type=content_type)


def test_merge_patch_adds_and_replaces_keys_and_keeps_the_others(cluster, namespace):
    before = warm_pod(cluster, "claimed")
    status, after = patch(cluster, "claimed", claim())
    assert status == 200, after
    assert after["metadata"]["labels"] == {
        MANAGED: "pod-router", "pod-router.io/pool": "warm",
        "pod-router.io/session": "user-alice", "pod-router.io/identity-hash": IDENTITY_HASH}
    assert after["metadata"]["annotations"] == {"pod-router.io/template": "v1", "pod-router.io/identity": "alice"}
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # Metadata only: neither the spec nor its generation moves.
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"] == before["status"]
    assert cluster.request("GET", path("claimed"))[1] == after

    # A value replaced; the same patch again is a no-op that keeps the version.
    status, again = patch(cluster, "claimed", {"metadata": {"labels": {"pod-router.io/pool": "claimed"}}})
    assert status == 200 and again["metadata"]["labels"]["pod-router.io/pool"] == "claimed"
    status, same = patch(cluster, "claimed", {"metadata": {"labels": {"pod-router.io/pool": "claimed"}}})
    assert status == 200 and same["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]


def test_null_removes_a_key(cluster, namespace):
    warm_pod(cluster, "released")
    assert patch(cluster, "released", claim())[0] == 200
    status, pod = patch(cluster, "released", {"metadata": {
        "labels": {"pod-router.io/session": None, "pod-router.io/identity-hash": None, "absent": None},
        "annotations": {"pod-router.io/identity": None}}})
    assert status == 200, pod
    assert pod["metadata"]["labels"] == {MANAGED: "pod-router", "pod-router.io/pool": "warm"}
    assert pod["metadata"]["annotations"] == {"pod-router.io/template": "v1"}


def test_a_resource_version_in_the_patch_is_a_precondition(cluster, namespace):
    pod = warm_pod(cluster, "contended")
    version = pod["metadata"]["resourceVersion"]
    body = claim("alice")
    body["metadata"]["resourceVersion"] = version
    status, won = patch(cluster, "contended", body)
    assert status == 200, won
    assert won["metadata"]["resourceVersion"] != version

    # A second claim made from the same read loses, and changes nothing.
    late = claim("bob")
    late["metadata"]["resourceVersion"] = version
    status, lost = patch(cluster, "contended", late)
    assert status == 409 and lost["reason"] == "Conflict", lost
    assert lost["message"] == ('Operation cannot be fulfilled on pods "contended": the object has been '
                               "modified; please apply your changes to the latest version and try again")
    assert lost["details"] == {"kind": "pods", "name": "contended"}
    assert cluster.request("GET", path("contended"))[1] == won

    # The same in a JSON patch, and a dry run checks it too.
    stale = [{"op": "replace", "path": "/metadata/resourceVersion", "value": version},
             {"op": "add", "path": "/metadata/labels/x", "value": "y"}]
    assert patch(cluster, "contended", stale, content_type="application/json-patch+json")[0] == 409
    status, _ = cluster.request("PATCH", path("contended") + "?dryRun=All", late, content_type=MERGE)
    assert status == 409
    current = dict(late, metadata=dict(late["metadata"], resourceVersion=won["metadata"]["resourceVersion"]))
    status, taken = patch(cluster, "contended", current)
    assert status == 200 and taken["metadata"]["labels"]["pod-router.io/session"] == "user-bob"


def test_concurrent_patches_of_different_keys_all_land(cluster, namespace):
    warm_pod(cluster, "busy")

    def label(n):
        return patch(cluster, "busy", {"metadata": {"labels": {f"k{n}": "v"}, "annotations": {f"a{n}": "v"}}})[0]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        assert set(pool.map(label, range(24))) == {200}
    pod = cluster.request("GET", path("busy"))[1]
    assert {f"k{n}" for n in range(24)} <= set(pod["metadata"]["labels"])
    assert {f"a{n}" for n in range(24)} <= set(pod["metadata"]["annotations"])


def test_selector_watches_see_modified_added_and_deleted(cluster, namespace):
    warm_pod(cluster, "watched")
    since = cluster.request("GET", path())[1]["metadata"]["resourceVersion"]
    status, claimed = patch(cluster, "watched", claim())
    assert status == 200
    status, moved = patch(cluster, "watched", {"metadata": {"labels": {"pod-router.io/pool": "claimed"}}})
    assert status == 200

    def watch(selector):
        events = cluster.watch(path() + f"?watch=true&resourceVersion={since}&timeoutSeconds=1"
                               f"&labelSelector={selector}")
        return [e for e in events if e["object"]["metadata"]["name"] == "watched"]

    managed = watch(f"{MANAGED}%3Dpod-router")
    assert [e["type"] for e in managed] == ["MODIFIED", "MODIFIED"]
    assert managed[0]["object"]["metadata"]["labels"]["pod-router.io/session"] == "user-alice"
    assert managed[0]["object"]["metadata"]["annotations"]["pod-router.io/identity"] == "alice"
    assert managed[0]["object"]["metadata"]["resourceVersion"] == claimed["metadata"]["resourceVersion"]

    # Stops matching: DELETED with the object as it last matched, at the new version.
    warm = watch("pod-router.io/pool%3Dwarm")
    assert [e["type"] for e in warm] == ["MODIFIED", "DELETED"]
    assert warm[1]["object"]["metadata"]["labels"]["pod-router.io/pool"] == "warm"
    assert warm[1]["object"]["metadata"]["resourceVersion"] == moved["metadata"]["resourceVersion"]
    assert warm[1]["object"]["kind"] == "Pod"

    # Starts matching: ADDED, with the labels that made it match.
    sessions = watch("pod-router.io/session")
    assert [e["type"] for e in sessions] == ["ADDED", "MODIFIED"]
    assert sessions[0]["object"]["metadata"]["resourceVersion"] == claimed["metadata"]["resourceVersion"]

    # Without a resourceVersion a watch starts from the current state:
    # released, the pod is no longer among a session's.
    assert patch(cluster, "watched", {"metadata": {"labels": {"pod-router.io/session": None}}})[0] == 200
    listed = cluster.watch(path() + "?watch=true&timeoutSeconds=1&labelSelector=pod-router.io%2Fsession")
    assert "watched" not in [e["object"]["metadata"]["name"] for e in listed]


@pytest.mark.parametrize("labels, field_value, problem", [
    ({"pod-router.io/session": "u" * 64}, "u" * 64, "must be no more than 63 characters"),
    ({"pod-router.io/session": "user alice!"}, "user alice!",
     "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
     "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
     "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
    ({"pod-router.io/-session": "ok"}, "pod-router.io/-session", "name part must consist of alphanumeric"),
    ({"Pod_Router.io/session": "ok"}, "Pod_Router.io/session",
     "prefix part a lowercase RFC 1123 subdomain must consist of"),
    ({"a/b/c": "ok"}, "a/b/c", "a qualified name must consist of"),
    ({"pod-router.io/" + "s" * 64: "ok"}, "pod-router.io/" + "s" * 64, "name part must be no more than 63"),
])
def test_invalid_labels_are_refused_as_kube_apiserver_does(cluster, namespace, labels, field_value, problem):
    if cluster.request("GET", path("strict"))[0] == 404:
        warm_pod(cluster, "strict")
    before = cluster.request("GET", path("strict"))[1]
    status, body = patch(cluster, "strict", {"metadata": {"labels": labels}})
    assert status == 422, body
    assert body["reason"] == "Invalid" and body["code"] == 422
    assert body["message"].startswith(f'Pod "strict" is invalid: metadata.labels: Invalid value: '
                                      f'{json.dumps(field_value)}: ')
    assert problem in body["message"]
    cause = body["details"]["causes"][0]
    assert cause["field"] == "metadata.labels" and cause["reason"] == "FieldValueInvalid"
    assert body["details"]["kind"] == "Pod" and body["details"]["name"] == "strict"
    assert cluster.request("GET", path("strict"))[1]["metadata"] == before["metadata"]


def test_bad_annotation_keys_and_two_problems_at_once(cluster, namespace):
    if cluster.request("GET", path("strict"))[0] == 404:
        warm_pod(cluster, "strict")
    status, body = patch(cluster, "strict", {"metadata": {"annotations": {"Mixed.Case/OK": "any value at all!"}}})
    assert status == 200, body  # annotation keys are checked in lower case, values are free
    status, body = patch(cluster, "strict", {"metadata": {"annotations": {"no spaces": "x"}}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.annotations"
    assert '"no spaces"' in body["message"]
    status, body = patch(cluster, "strict", {"metadata": {"labels": {"pod-router.io/session": "-" + "u" * 63}}})
    assert status == 422 and len(body["details"]["causes"]) == 2
    assert body["message"].startswith('Pod "strict" is invalid: [metadata.labels: Invalid value: ')
    status, body = patch(cluster, "strict", {"metadata": {"annotations": {"big": "x" * (256 * 1024)}}})
    assert status == 422 and body["details"]["causes"][0]["reason"] == "FieldValueTooLong"
    # The same rules on create.
    bad = pod_manifest("bad-label", probe=False, labels={"pod-router.io/session": "u" * 64})
    assert cluster.request("POST", path(), bad)[0] == 422


def test_patching_a_missing_pod_is_404(cluster, namespace):
    status, body = patch(cluster, "nope", claim())
    assert status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'pods "nope" not found'
    assert body["details"] == {"kind": "pods", "name": "nope"}


def test_status_and_spec_through_a_patch_of_the_pod(cluster, namespace):
    before = warm_pod(cluster, "guarded")
    body = claim()
    body["status"] = {"phase": "Failed", "podIP": "10.0.0.1"}
    status, after = patch(cluster, "guarded", body)
    # As with PUT: the labels land, the status stays the kubelet's.
    assert status == 200 and after["metadata"]["labels"]["pod-router.io/session"] == "user-alice"
    assert after["status"] == before["status"]
    status, refused = patch(cluster, "guarded", {"spec": {"nodeName": "elsewhere"}})
    assert status == 422 and "pod updates may not change fields" in refused["message"]
    # Identity fields are the server's.
    status, kept = patch(cluster, "guarded", {"metadata": {"uid": "forged", "generation": 99,
                                                           "creationTimestamp": "2000-01-01T00:00:00Z"}})
    assert status == 200
    assert {k: kept["metadata"][k] for k in ("uid", "generation", "creationTimestamp")} == \
        {k: before["metadata"][k] for k in ("uid", "generation", "creationTimestamp")}


def test_the_rbac_verb_is_patch(cluster, namespace):
    warm_pod(cluster, "authorized")
    token = cluster.token_for(*CONTROLLER)
    status, body = patch(cluster, "authorized", claim(), token=token)
    assert status == 200, body
    status, body = patch(cluster, "authorized", claim("mallory"), token=cluster.token_for(*GATEWAY))
    assert status == 403, body
    gateway = f"system:serviceaccount:{GATEWAY[0]}:{GATEWAY[1]}"
    assert body["message"] == (f'pods "authorized" is forbidden: User "{gateway}" cannot patch resource '
                               f'"pods" in API group "" in the namespace "{NAMESPACE}"')
    lines = [json.loads(line) for line in cluster.audit_path.read_text().splitlines()]
    mine = [(line["user"].rsplit(":", 1)[-1], line["verb"], line["allowed"]) for line in lines
            if line["namespace"] == NAMESPACE and line["name"] == "authorized" and line["verb"] == "patch"]
    assert mine == [("pod-router-controller", "patch", True), ("pod-router-gateway", "patch", False)]


def test_kubectl_label_and_annotate(cluster, namespace):
    pod = warm_pod(cluster, "labelled")
    cluster.kubectl("label", "pod", "labelled", "-n", NAMESPACE, "pod-router.io/session=user-carol")
    cluster.kubectl("annotate", "pod", "labelled", "-n", NAMESPACE, "pod-router.io/identity=carol")
    got = cluster.request("GET", path("labelled"))[1]["metadata"]
    assert got["labels"]["pod-router.io/session"] == "user-carol"
    assert got["labels"][MANAGED] == "pod-router"
    assert got["annotations"]["pod-router.io/identity"] == "carol"
    stale = cluster.kubectl("label", "pod", "labelled", "-n", NAMESPACE, "--overwrite",
                            f"--resource-version={pod['metadata']['resourceVersion']}",
                            "pod-router.io/session=user-dave", check=False)
    assert stale.returncode != 0 and "the object has been modified" in stale.stderr
    cluster.kubectl("label", "pod", "labelled", "-n", NAMESPACE, "pod-router.io/session-")
    assert "pod-router.io/session" not in cluster.request("GET", path("labelled"))[1]["metadata"]["labels"]
