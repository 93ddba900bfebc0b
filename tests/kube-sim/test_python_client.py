"""kube-sim driven by the official Python client (Debian's python3-kubernetes),
plus the error cases and wire shapes a client library depends on."""

import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from cluster import pod_manifest, wait_for

NAMESPACE = "client-test"


@pytest.fixture(scope="module")
def api(cluster):
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    yield core, client.CoordinationV1Api(api_client)
    core.delete_namespace(NAMESPACE)


def test_create_get_list_delete_pods(cluster, api):
    core, _ = api
    created = core.create_namespaced_pod(NAMESPACE, pod_manifest("alpha", labels={"app": "a", "tier": "x"}))
    core.create_namespaced_pod(NAMESPACE, pod_manifest("beta", labels={"app": "b"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.status.phase == "Pending"
    assert int(created.metadata.resource_version) > 0

    fetched = core.read_namespaced_pod("alpha", NAMESPACE)
    assert fetched.metadata.uid == created.metadata.uid
    assert [p.metadata.name for p in core.list_namespaced_pod(NAMESPACE, label_selector="app=a").items] == ["alpha"]
    assert [p.metadata.name for p in core.list_namespaced_pod(NAMESPACE, label_selector="app in (a,b),tier!=x").items] == ["beta"]
    assert [p.metadata.name for p in core.list_namespaced_pod(NAMESPACE, field_selector="metadata.name=beta").items] == ["beta"]

    ready = wait_for(lambda: next((c for c in core.read_namespaced_pod("alpha", NAMESPACE).status.conditions or []
                                   if c.type == "Ready" and c.status == "True"), None), what="alpha Ready")
    assert ready.last_transition_time is not None
    status = core.read_namespaced_pod("alpha", NAMESPACE).status
    assert status.phase == "Running" and cluster.owns_address(status.pod_ip)
    assert status.container_statuses[0].state.running.started_at is not None

    for name in ("alpha", "beta"):
        core.delete_namespaced_pod(name, NAMESPACE)
    wait_for(lambda: not core.list_namespaced_pod(NAMESPACE).items, what="pods gone")


def test_errors_are_status_objects_with_the_right_codes(api):
    core, _ = api
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", NAMESPACE)
    assert missing.value.status == 404
    assert '"reason":"NotFound"' in missing.value.body.replace(" ", "")
    assert 'pods \\"nope\\" not found' in missing.value.body

    core.create_namespaced_pod(NAMESPACE, pod_manifest("dup"))
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_pod(NAMESPACE, pod_manifest("dup"))
    assert duplicate.value.status == 409
    assert "AlreadyExists" in duplicate.value.body

    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(NAMESPACE, {"metadata": {"name": "-bad-"}, "spec": {"containers": []}})
    assert invalid.value.status == 422
    assert "Invalid" in invalid.value.body and "metadata.name" in invalid.value.body

    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_pod("does-not-exist", pod_manifest("x"))
    assert no_namespace.value.status == 404
    assert 'namespaces \\"does-not-exist\\" not found' in no_namespace.value.body
    core.delete_namespaced_pod("dup", NAMESPACE, grace_period_seconds=0)


def test_watch_sees_added_modified_deleted_and_resumes(api):
    core, _ = api
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    seen = []

    def collect():
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_pod, NAMESPACE, resource_version=start,
                                   field_selector="metadata.name=watched", timeout_seconds=20):
            seen.append((event["type"], event["object"].metadata.resource_version,
                         event["object"].status.phase))
            if event["type"] == "DELETED":
                stream.stop()

    worker = threading.Thread(target=collect)
    worker.start()
    core.create_namespaced_pod(NAMESPACE, pod_manifest("watched"))
    core.create_namespaced_pod(NAMESPACE, pod_manifest("ignored"))
    wait_for(lambda: any(phase == "Running" for _, _, phase in seen), what="a Running event")
    core.delete_namespaced_pod("watched", NAMESPACE, grace_period_seconds=0)
    worker.join(30)
    assert not worker.is_alive()
    types = [kind for kind, _, _ in seen]
    assert types[0] == "ADDED" and "MODIFIED" in types and types[-1] == "DELETED"
    versions = [int(version) for _, version, _ in seen]
    assert versions == sorted(versions)

    # Resuming from a version replays exactly what came after it.
    middle = seen[1][1]
    replay = []
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, NAMESPACE, resource_version=middle,
                               field_selector="metadata.name=watched", timeout_seconds=2):
        replay.append(event["object"].metadata.resource_version)
        if event["type"] == "DELETED":
            stream.stop()
    assert replay == [version for _, version, _ in seen[2:]]
    core.delete_namespaced_pod("ignored", NAMESPACE, grace_period_seconds=0)


def test_leases_use_optimistic_concurrency(api):
    _, coordination = api
    lease = coordination.create_namespaced_lease(NAMESPACE, {
        "metadata": {"name": "controller-leader"},
        "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15},
    })
    stale_version = lease.metadata.resource_version
    lease.spec.holder_identity = "replica-b"
    renewed = coordination.replace_namespaced_lease("controller-leader", NAMESPACE, lease)
    assert renewed.spec.holder_identity == "replica-b"
    assert int(renewed.metadata.resource_version) > int(stale_version)

    lease.spec.holder_identity = "replica-c"
    lease.metadata.resource_version = stale_version
    with pytest.raises(ApiException) as conflict:
        coordination.replace_namespaced_lease("controller-leader", NAMESPACE, lease)
    assert conflict.value.status == 409
    assert "the object has been modified" in conflict.value.body
    assert coordination.read_namespaced_lease("controller-leader", NAMESPACE).spec.holder_identity == "replica-b"


def test_labels_annotations_and_owner_references_are_kept(api):
    core, _ = api
    manifest = pod_manifest("kept", labels={"app.kubernetes.io/managed-by": "pod-router"})
    manifest["metadata"]["annotations"] = {"pod-router.io/identity": "Alice <alice@example.com>"}
    manifest["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                "uid": "1234", "controller": True}]
    core.create_namespaced_pod(NAMESPACE, manifest)
    pod = core.read_namespaced_pod("kept", NAMESPACE)
    assert pod.metadata.labels == {"app.kubernetes.io/managed-by": "pod-router"}
    assert pod.metadata.annotations == {"pod-router.io/identity": "Alice <alice@example.com>"}
    assert pod.metadata.owner_references[0].uid == "1234"
    core.delete_namespaced_pod("kept", NAMESPACE, grace_period_seconds=0)
