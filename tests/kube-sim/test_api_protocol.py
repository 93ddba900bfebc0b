"""Wire-level behaviour over raw HTTPS: authentication, discovery, watch
resume limits and bookmarks, pagination, patches, graceful deletion."""

import json
import ssl
import time
import urllib.request

import pytest

from cluster import KubeSim, pod_manifest, wait_for

NAMESPACE = "protocol-test"


@pytest.fixture(scope="module")
def namespace(cluster):
    status, _ = cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    assert status == 201
    yield NAMESPACE
    cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def pods_path(namespace, name=""):
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def read_watch(cluster, path, max_events, timeout=15):
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    request = urllib.request.Request(cluster.server + path)
    request.add_header("Authorization", f"Bearer {cluster.admin_token}")
    events = []
    with urllib.request.urlopen(request, context=context, timeout=timeout) as reply:
        assert reply.headers["Transfer-Encoding"] == "chunked"
        for line in reply:
            events.append(json.loads(line))
            if len(events) >= max_events:
                break
    return events


def test_no_or_wrong_token_is_401(cluster):
    for token in (False, "not-a-token"):
        status, body = cluster.request("GET", "/api/v1/pods", token=token)
        assert status == 401
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


def test_health_and_version_need_no_token(cluster):
    assert cluster.request("GET", "/healthz", token=False) == (200, "ok")
    status, version = cluster.request("GET", "/version", token=False)
    assert status == 200 and version["major"] == "1" and version["minor"] == "32"


def test_discovery_documents(cluster):
    _, core = cluster.request("GET", "/api/v1")
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["namespaced"] and "watch" in pods["verbs"] and pods["shortNames"] == ["po"]
    _, groups = cluster.request("GET", "/apis")
    assert {g["name"] for g in groups["groups"]} == {"coordination.k8s.io", "rbac.authorization.k8s.io"}
    _, leases = cluster.request("GET", "/apis/coordination.k8s.io/v1")
    assert leases["resources"][0]["kind"] == "Lease"
    status, _ = cluster.request("GET", "/apis/apps/v1")
    assert status == 404


def test_list_items_carry_no_kind_and_paginate(cluster, namespace):
    for index in range(5):
        status, _ = cluster.request("POST", pods_path(namespace),
                                    pod_manifest(f"page-{index}", probe=False, labels={"page": "yes"}))
        assert status == 201
    status, first = cluster.request("GET", pods_path(namespace) + "?labelSelector=page%3Dyes&limit=2")
    assert status == 200 and first["kind"] == "PodList" and first["apiVersion"] == "v1"
    assert "kind" not in first["items"][0]
    assert [p["metadata"]["name"] for p in first["items"]] == ["page-0", "page-1"]
    assert first["metadata"]["remainingItemCount"] == 3
    names = [p["metadata"]["name"] for p in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        _, page = cluster.request("GET", pods_path(namespace) + f"?labelSelector=page%3Dyes&limit=2&continue={token}")
        names += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"page-{i}" for i in range(5)]
    status, _ = cluster.request("DELETE", pods_path(namespace) + "?labelSelector=page%3Dyes")
    assert status == 200


def test_merge_and_json_patches(cluster, namespace):
    cluster.request("POST", pods_path(namespace), pod_manifest("patched", probe=False))
    status, pod = cluster.request("PATCH", pods_path(namespace, "patched"),
                                  {"metadata": {"labels": {"team": "a"}, "annotations": {"x": "1"}}},
                                  content_type="application/merge-patch+json")
    assert status == 200 and pod["metadata"]["labels"] == {"app": "test", "team": "a"}
    status, pod = cluster.request("PATCH", pods_path(namespace, "patched"),
                                  [{"op": "remove", "path": "/metadata/labels/team"},
                                   {"op": "replace", "path": "/metadata/annotations/x", "value": "2"}],
                                  content_type="application/json-patch+json")
    assert status == 200 and pod["metadata"]["labels"] == {"app": "test"}
    assert pod["metadata"]["annotations"] == {"x": "2"}
    status, body = cluster.request("PATCH", pods_path(namespace, "patched"), {"spec": {"restartPolicy": "Never"}},
                                   content_type="application/merge-patch+json")
    assert status == 422 and "pod updates may not change fields" in body["message"]
    status, body = cluster.request("PATCH", pods_path(namespace, "patched"), {},
                                   content_type="application/apply-patch+yaml")
    assert status == 415
    cluster.request("DELETE", pods_path(namespace, "patched") + "?gracePeriodSeconds=0")


def test_bad_requests(cluster, namespace):
    status, body = cluster.request("POST", pods_path(namespace), b"{not json")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body = cluster.request("POST", pods_path(namespace),
                                   {**pod_manifest("wrong-ns"), "metadata": {"name": "x", "namespace": "other"}})
    assert status == 400 and "does not match the namespace" in body["message"]
    status, body = cluster.request("GET", pods_path(namespace) + "?labelSelector=%3D%3Dbad")
    assert status == 400
    status, _ = cluster.request("GET", "/api/v1/widgets")
    assert status == 404


def test_watch_resumes_and_reports_a_compacted_version_as_410(tmp_path):
    small = KubeSim(tmp_path / "small-history", "--watch-history", "10", "--bookmark-interval", "0.5")
    try:
        _, listed = small.request("GET", "/api/v1/namespaces/default/pods")
        start = listed["metadata"]["resourceVersion"]
        for index in range(3):
            small.request("POST", "/api/v1/namespaces/default/configmaps",
                          {"metadata": {"name": f"cm-{index}"}, "data": {"i": str(index)}})
        events = read_watch(small, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}", 3)
        assert [e["type"] for e in events] == ["ADDED"] * 3
        assert [e["object"]["metadata"]["name"] for e in events] == ["cm-0", "cm-1", "cm-2"]
        assert events[0]["object"]["kind"] == "ConfigMap"

        for index in range(30):
            small.request("PATCH", "/api/v1/namespaces/default/configmaps/cm-0", {"data": {"i": str(index)}},
                          content_type="application/merge-patch+json")
        expired = read_watch(small, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}", 1)
        assert expired[0]["type"] == "ERROR"
        assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"
        assert "too old resource version" in expired[0]["object"]["message"]

        _, now = small.request("GET", "/api/v1/namespaces/default/configmaps")
        version = now["metadata"]["resourceVersion"]
        marks = read_watch(small, "/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true"
                                  f"&resourceVersion={version}", 1)
        assert marks[0]["type"] == "BOOKMARK"
        assert int(marks[0]["object"]["metadata"]["resourceVersion"]) >= int(version)
    finally:
        assert small.stop() == 0


def test_graceful_delete_keeps_the_pod_until_its_process_exits(cluster, namespace):
    status, _ = cluster.request("POST", pods_path(namespace), pod_manifest("stubborn", image="stubborn",
                                                                           probe=False, grace=2))
    assert status == 201
    wait_for(lambda: cluster.request("GET", pods_path(namespace, "stubborn"))[1]["status"].get("phase") == "Running",
             what="stubborn running")
    started = time.monotonic()
    status, pod = cluster.request("DELETE", pods_path(namespace, "stubborn"))
    assert status == 200 and pod["metadata"]["deletionTimestamp"]
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 2
    # It ignores SIGTERM, so it lives out its grace period, then is killed.
    assert cluster.request("GET", pods_path(namespace, "stubborn"))[0] == 200
    wait_for(lambda: cluster.request("GET", pods_path(namespace, "stubborn"))[0] == 404, what="deletion")
    assert 1.8 <= time.monotonic() - started < 8


def test_dry_run_stores_nothing(cluster, namespace):
    status, body = cluster.request("POST", pods_path(namespace) + "?dryRun=All", pod_manifest("dry", probe=False))
    assert status == 201 and body["metadata"]["name"] == "dry"
    assert cluster.request("GET", pods_path(namespace, "dry"))[0] == 404


def test_finalizers_hold_an_object_until_removed(cluster, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    cluster.request("POST", path, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    status, body = cluster.request("DELETE", f"{path}/held")
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    assert cluster.request("GET", f"{path}/held")[0] == 200
    status, _ = cluster.request("PATCH", f"{path}/held", {"metadata": {"finalizers": None}},
                                content_type="application/merge-patch+json")
    assert status == 200
    assert cluster.request("GET", f"{path}/held")[0] == 404
