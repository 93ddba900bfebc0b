"""--pod-timeline FILE: one JSON line per pod lifecycle moment, with the wall
clock in milliseconds, for benchmarks that need more than the one-second
resolution of Kubernetes timestamps.

The store calls observe() for every write it records, with its lock held,
right after it made the watch event: so a line's time is the moment the
object changed in the store (the one the watch event carries), the lines
come in the store's order, and the store's lock is the only one needed.
Events, in the order they can happen to one pod:

  created      the create request stored the pod
  scheduled    the pod was bound to the node (spec.nodeName set, with
               PodScheduled=True), after --schedule-delay
  running      the stored status shows a running container where none ran
               (containers started after --start-delay; again after a restart)
  ready        the Ready condition became True (again after being False)
  unready      the Ready condition went from True to False
  terminating  deletion began (deletionTimestamp set)
  deleted      the object was removed
"""

import json
import logging
import time

from . import resources

log = logging.getLogger("kube-sim.timeline")


def _running(pod):
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return any("running" in (entry.get("state") or {}) for entry in statuses)


def _bound(pod):
    return bool((pod.get("spec") or {}).get("nodeName"))


def _ready(pod):
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _terminating(pod):
    return bool(pod["metadata"].get("deletionTimestamp"))


class PodTimeline:
    def __init__(self, path):
        # Line-buffered: each line reaches the file as it is written, so a
        # reader can follow it while kube-sim runs. Appends to what is there.
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._pods = resources.pods()
        self._failing = False

    def observe(self, event_type, rtype, obj, previous):
        """Called by the store with its lock held; never raises."""
        if rtype is not self._pods:
            return
        at_ms = round(time.time() * 1000.0, 3)
        if event_type == "DELETED":
            self._write(at_ms, "deleted", obj)
            return
        if event_type == "ADDED":
            self._write(at_ms, "created", obj)
            previous = {"metadata": {}}
        if _bound(obj) and not _bound(previous):
            self._write(at_ms, "scheduled", obj)
        if _running(obj) and not _running(previous):
            self._write(at_ms, "running", obj)
        ready, was_ready = _ready(obj), _ready(previous)
        if ready and not was_ready:
            self._write(at_ms, "ready", obj)
        elif was_ready and not ready:
            self._write(at_ms, "unready", obj)
        if _terminating(obj) and not _terminating(previous):
            self._write(at_ms, "terminating", obj)

    def _write(self, at_ms, event, pod):
        meta = pod["metadata"]
        line = json.dumps({"at_ms": at_ms, "event": event, "namespace": meta.get("namespace", ""),
                           "name": meta.get("name", ""), "uid": meta.get("uid", "")})
        try:
            self._file.write(line + "\n")
            self._failing = False
        except (OSError, ValueError) as error:  # a full disk, or closed at shutdown
            if not self._failing:
                log.warning("cannot write to the pod timeline: %s", error)
            self._failing = True

    def close(self):
        try:
            self._file.close()
        except OSError as error:
            log.warning("cannot close the pod timeline: %s", error)
