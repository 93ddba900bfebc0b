"""The object store: what etcd plus the apiserver's watch cache do for us.

One global, monotonically increasing resourceVersion; every write records a
watch event in a bounded history, so that a watch can resume from any
resourceVersion still in it and gets 410 Expired for one that is not.
"""

import bisect
import copy
import threading
import time
import uuid
from dataclasses import dataclass

from . import errors


def now_rfc3339(at=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


@dataclass
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    rtype: object
    namespace: str
    obj: dict
    previous: dict = None


class Store:
    def __init__(self, history_limit=20000, observer=None):
        self._changed = threading.Condition()
        self._objects = {}
        self._resource_version = 1
        self._history = []
        self._history_versions = []
        self._history_limit = history_limit
        # Events up to and including this version have been dropped.
        self._compacted_version = 1
        # observer(event_type, rtype, obj, previous), called with the lock
        # held for every recorded write (timeline.PodTimeline); must not raise.
        self._observer = observer

    # --- reads -------------------------------------------------------------

    @property
    def resource_version(self):
        with self._changed:
            return self._resource_version

    def get(self, rtype, namespace, name):
        with self._changed:
            obj = self._objects.get((rtype, namespace, name))
            if obj is None:
                raise errors.not_found(rtype, name)
            return copy.deepcopy(obj)

    def exists(self, rtype, namespace, name):
        with self._changed:
            return (rtype, namespace, name) in self._objects

    def list(self, rtype, namespace=None, predicate=None):
        """Objects of a type, in (namespace, name) order, and the list's resourceVersion."""
        with self._changed:
            items = [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in self._objects.items()
                if kind is rtype and (namespace is None or ns == namespace)
                and (predicate is None or predicate(obj))
            ]
            version = self._resource_version
        items.sort(key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
        return items, version

    # --- writes ------------------------------------------------------------

    def _record(self, event_type, rtype, namespace, obj, previous=None):
        """Bumps the version, stamps obj with it and logs the event; lock held."""
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        event = WatchEvent(
            self._resource_version, event_type, rtype, namespace, copy.deepcopy(obj), previous
        )
        self._history.append(event)
        self._history_versions.append(self._resource_version)
        if len(self._history) > self._history_limit * 5 // 4:
            drop = len(self._history) - self._history_limit
            self._compacted_version = self._history_versions[drop - 1]
            del self._history[:drop]
            del self._history_versions[:drop]
        self._changed.notify_all()
        if self._observer is not None:
            self._observer(event_type, rtype, obj, previous)

    def create(self, rtype, namespace, obj):
        meta = obj.setdefault("metadata", {})
        key = (rtype, namespace, meta["name"])
        with self._changed:
            if key in self._objects:
                raise errors.already_exists(rtype, meta["name"])
            if rtype.namespaced:
                meta["namespace"] = namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta.setdefault("generation", 1)
            meta.pop("deletionTimestamp", None)
            meta.pop("deletionGracePeriodSeconds", None)
            obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
            self._record("ADDED", rtype, namespace, obj)
            self._objects[key] = obj
            return copy.deepcopy(obj)

    def update(self, rtype, namespace, name, mutate, expected_version=None):
        """Read-modify-write under the lock. mutate(obj) changes obj in place
        (or returns a replacement); returns the stored copy. A stale
        expected_version is a 409 Conflict, as optimistic concurrency wants."""
        key = (rtype, namespace, name)
        with self._changed:
            current = self._objects.get(key)
            if current is None:
                raise errors.not_found(rtype, name)
            if expected_version and expected_version != current["metadata"]["resourceVersion"]:
                raise errors.conflict(rtype, name)
            previous = copy.deepcopy(current)
            candidate = copy.deepcopy(current)
            replaced = mutate(candidate)
            if replaced is not None:
                candidate = replaced
            # Identity fields are the server's, whatever the client sent
            # (generation too: only a change of spec moves it, below).
            for field in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
                if field in previous["metadata"]:
                    candidate["metadata"][field] = previous["metadata"][field]
                else:
                    candidate["metadata"].pop(field, None)
            candidate["apiVersion"], candidate["kind"] = rtype.api_version, rtype.kind
            candidate["metadata"]["resourceVersion"] = previous["metadata"]["resourceVersion"]
            if candidate == previous:
                return copy.deepcopy(current)  # no-op writes do not bump the version
            if candidate.get("spec") != previous.get("spec"):
                candidate["metadata"]["generation"] = previous["metadata"].get("generation", 1) + 1
            self._record("MODIFIED", rtype, namespace, candidate, previous)
            self._objects[key] = candidate
            if candidate["metadata"].get("deletionTimestamp") and not candidate["metadata"].get(
                "finalizers"
            ) and previous["metadata"].get("finalizers"):
                # The last finalizer is gone from an object being deleted.
                self._remove_locked(key)
            return copy.deepcopy(candidate)

    def _existing(self, rtype, namespace, name, preconditions):
        """The stored object, checked against a delete's preconditions; lock held."""
        current = self._objects.get((rtype, namespace, name))
        if current is None:
            raise errors.not_found(rtype, name)
        self._check_preconditions(rtype, current, preconditions)
        return current

    def mark_deleted(self, rtype, namespace, name, grace_seconds, preconditions=None):
        """Starts a graceful deletion: sets deletionTimestamp, keeps the object."""
        with self._changed:
            current = self._existing(rtype, namespace, name, preconditions)
            meta = current["metadata"]
            if meta.get("deletionTimestamp"):
                # Already terminating: only a shorter grace period may apply.
                if grace_seconds is None or grace_seconds >= meta.get(
                    "deletionGracePeriodSeconds", 0
                ):
                    return copy.deepcopy(current)
            previous = copy.deepcopy(current)
            meta["deletionTimestamp"] = now_rfc3339(time.time() + (grace_seconds or 0))
            meta["deletionGracePeriodSeconds"] = grace_seconds or 0
            self._record("MODIFIED", rtype, namespace, current, previous)
            return copy.deepcopy(current)

    def _check_preconditions(self, rtype, current, preconditions):
        if not preconditions:
            return
        meta = current["metadata"]
        uid, version = preconditions.get("uid"), preconditions.get("resourceVersion")
        if uid and uid != meta["uid"]:
            raise errors.conflict(rtype, meta["name"])
        if version and version != meta["resourceVersion"]:
            raise errors.conflict(rtype, meta["name"])

    def remove(self, rtype, namespace, name, preconditions=None):
        """Deletes at once (no grace), unless finalizers hold the object."""
        with self._changed:
            current = self._existing(rtype, namespace, name, preconditions)
            if current["metadata"].get("finalizers"):
                if not current["metadata"].get("deletionTimestamp"):
                    previous = copy.deepcopy(current)
                    current["metadata"]["deletionTimestamp"] = now_rfc3339()
                    current["metadata"]["deletionGracePeriodSeconds"] = 0
                    self._record("MODIFIED", rtype, namespace, current, previous)
                return copy.deepcopy(current), False
            return self._remove_locked((rtype, namespace, name)), True

    def _remove_locked(self, key):
        rtype, namespace, _ = key
        obj = self._objects.pop(key)
        previous = copy.deepcopy(obj)
        self._record("DELETED", rtype, namespace, obj, previous)
        return copy.deepcopy(obj)

    # --- watch -------------------------------------------------------------

    def events_after(self, version, timeout):
        """Waits up to timeout for events newer than version. Returns
        (events, newest_version). Raises 410 Expired when version is older
        than the retained history."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if version < self._compacted_version:
                    raise errors.expired(
                        f"too old resource version: {version} ({self._compacted_version + 1})"
                    )
                start = bisect.bisect_right(self._history_versions, version)
                if start < len(self._history):
                    return list(self._history[start:]), self._resource_version
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], self._resource_version
                self._changed.wait(remaining)

    def wake_watchers(self):
        with self._changed:
            self._changed.notify_all()
