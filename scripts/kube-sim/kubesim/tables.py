"""meta.k8s.io/v1 Table output, what `kubectl get` asks for first, so that
its columns (READY, STATUS, RESTARTS, IP) look as they do against a cluster."""

import calendar
import time


def wants_table(headers):
    accept = headers.get("Accept") or ""
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _age(timestamp):
    if not timestamp:
        return "<unknown>"
    seconds = int(time.time() - calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")))
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" + (f"{seconds % 60}s" if seconds < 600 and seconds % 60 else "")
    if seconds < 86400:
        return f"{seconds // 3600}h" + (f"{seconds % 3600 // 60}m" if seconds % 3600 >= 60 else "")
    return f"{seconds // 86400}d"


def pod_status_word(pod):
    """The STATUS column, following kubectl's printer: a container's waiting
    or terminated reason wins over the phase; deletion shows Terminating."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_cells(pod):
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in containers if c.get("ready"))
    restarts = sum(c.get("restartCount", 0) for c in containers)
    return [
        f"{ready}/{total}",
        pod_status_word(pod),
        restarts,
        status.get("podIP") or "<none>",
        (pod.get("spec") or {}).get("nodeName") or "<none>",
    ]


_NAME = {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."}
_AGE = {"name": "Age", "type": "string", "format": "", "priority": 0,
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}
_POD_COLUMNS = [
    {"name": "Ready", "type": "string", "format": "", "priority": 0,
     "description": "The aggregate readiness state of this pod for accepting traffic."},
    {"name": "Status", "type": "string", "format": "", "priority": 0,
     "description": "The aggregate status of the containers in this pod."},
    {"name": "Restarts", "type": "string", "format": "", "priority": 0,
     "description": "The number of times the containers in this pod have been restarted."},
    {"name": "IP", "type": "string", "format": "", "priority": 1, "description": "IP address of the pod."},
    {"name": "Node", "type": "string", "format": "", "priority": 1,
     "description": "Name of the node the pod is assigned to."},
]


def table(rtype, items, resource_version, single=False):
    is_pod = rtype.plural == "pods"
    columns = [_NAME] + (_POD_COLUMNS[:3] if is_pod else []) + [_AGE] + (_POD_COLUMNS[3:] if is_pod else [])
    rows = []
    for obj in items:
        meta = obj["metadata"]
        cells = [meta["name"]]
        if is_pod:
            pod_cells = _pod_cells(obj)
            cells += pod_cells[:3] + [_age(meta.get("creationTimestamp"))] + pod_cells[3:]
        else:
            cells.append(_age(meta.get("creationTimestamp")))
        rows.append({
            "cells": cells,
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
        })
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": columns,
        "rows": rows,
    }
