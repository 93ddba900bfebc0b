"""Leases as kube-apiserver takes them: MicroTime fields decoded strictly,
the spec's counts validated, and every update conditional on a
resourceVersion (leaseStrategy allows no unconditional update)."""

import pytest

NAMESPACE = "lease-rules"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"


@pytest.fixture(scope="module")
def namespace(cluster):
    status, _ = cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    assert status == 201
    yield NAMESPACE
    cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def lease(name, **spec):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": spec}


@pytest.mark.parametrize("when", [
    "2026-11-26T08:00:00.000000Z",
    "2026-11-26T08:00:00.123456+01:00",
])
def test_micro_times_with_six_digits_are_taken(cluster, namespace, when):
    name = "ok-" + str(len(when))
    status, created = cluster.request("POST", LEASES, lease(name, acquireTime=when, renewTime=when))
    assert status == 201, created
    assert created["spec"]["renewTime"] == when


@pytest.mark.parametrize("when", [
    "2026-11-26T08:00:00Z",          # metav1.Time, not MicroTime
    "2026-11-26T08:00:00.123Z",      # milliseconds
    "2026-13-26T08:00:00.000000Z",   # no such month
    "not a time",
    12345,
])
def test_other_times_do_not_decode(cluster, namespace, when):
    status, body = cluster.request("POST", LEASES, lease("bad-time", renewTime=when))
    assert status == 400, body
    assert body["reason"] == "BadRequest"
    assert 'Lease in version "v1" cannot be handled as a Lease' in body["message"]
    status, _ = cluster.request("GET", f"{LEASES}/bad-time")
    assert status == 404


def test_counts_are_validated(cluster, namespace):
    status, body = cluster.request("POST", LEASES, lease("bad-counts", leaseDurationSeconds=0,
                                                         leaseTransitions=-1))
    assert status == 422, body
    assert {cause["field"] for cause in body["details"]["causes"]} == {
        "spec.leaseDurationSeconds", "spec.leaseTransitions"}
    assert "must be greater than 0" in body["message"]


def test_updates_need_a_current_resource_version(cluster, namespace):
    now = "2026-11-26T08:00:00.000000Z"
    status, created = cluster.request("POST", LEASES, lease("held", holderIdentity="a",
                                                            leaseDurationSeconds=15, renewTime=now))
    assert status == 201
    read_version = created["metadata"]["resourceVersion"]

    unconditional = lease("held", holderIdentity="b", leaseDurationSeconds=15, renewTime=now)
    status, body = cluster.request("PUT", f"{LEASES}/held", unconditional)
    assert status == 422, body
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"

    renewed = dict(created, spec=dict(created["spec"], renewTime="2026-11-26T08:00:02.000000Z"))
    status, current = cluster.request("PUT", f"{LEASES}/held", renewed)
    assert status == 200, current
    assert int(current["metadata"]["resourceVersion"]) > int(read_version)

    # A second write from the same read loses: optimistic concurrency.
    taken = dict(created, spec=dict(created["spec"], holderIdentity="b"))
    status, body = cluster.request("PUT", f"{LEASES}/held", taken)
    assert status == 409 and body["reason"] == "Conflict"

    # A current version does not make a bad time acceptable.
    bad_renewal = dict(current, spec=dict(current["spec"], renewTime="2026-11-26T08:00:04Z"))
    status, body = cluster.request("PUT", f"{LEASES}/held", bad_renewal)
    assert status == 400, body

    _, stored = cluster.request("GET", f"{LEASES}/held")
    assert stored["spec"]["holderIdentity"] == "a"
    assert stored["spec"]["renewTime"] == "2026-11-26T08:00:02.000000Z"
