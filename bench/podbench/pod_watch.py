"""A pod timeline for a real kube-apiserver. kube-sim writes its own
(--pod-timeline) at the moment its store changes; a real API server keeps
only timestamps to the second, so the bench watches the user namespace
itself and hands each event, as it arrives, to kube-sim's PodTimeline: the
same rules for what counts as created, scheduled, running and ready, and
the same file format, so the phases read both backends alike.

A line's time is the moment the event reached the bench, a few
milliseconds after the API server stored the change; created and ready
are both late by about as much, so the time between them holds."""

import logging
import sys
import threading
import time

from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch

from .servers import REPO

sys.path.insert(0, str(REPO / "scripts" / "kube-sim"))

from kubesim import resources  # noqa: E402
from kubesim.timeline import PodTimeline  # noqa: E402

log = logging.getLogger("podbench.pod_watch")
# A watch request ends after this long, so that stop() is never waited on
# for longer; the next one resumes from the last resourceVersion seen.
WATCH_SECONDS = 5
RETRY_SECONDS = 0.5


class PodWatch:
    def __init__(self, kubeconfig, namespace, path):
        self.namespace = namespace
        self.core = kube_client.CoreV1Api(kube_config.new_client_from_config(config_file=str(kubeconfig)))
        self.timeline = PodTimeline(path)
        self.pods = resources.pods()
        self._stopping = threading.Event()
        self._seen, resource_version = self._list()
        self._thread = threading.Thread(target=self._run, args=(resource_version,), name="pod-watch",
                                        daemon=True)
        self._thread.start()

    def _list(self):
        listing = self.core.list_namespaced_pod(self.namespace, _request_timeout=30)
        seen = {pod.metadata.uid: self.core.api_client.sanitize_for_serialization(pod)
                for pod in listing.items}
        return seen, listing.metadata.resource_version

    def _run(self, resource_version):
        while not self._stopping.is_set():
            try:
                resource_version = self._watch(resource_version)
            except kube_client.ApiException as error:
                if error.status != 410:
                    log.warning("pod watch: %s %s; retrying", error.status, error.reason)
                    time.sleep(RETRY_SECONDS)
                    continue
                # Too old to resume: start again from a list. The pods that
                # changed meanwhile miss those lines; a phase that needs one
                # says which pod's is missing.
                log.warning("pod watch: 410 Gone, listing again")
                self._seen, resource_version = self._list()
            except Exception as error:  # noqa: BLE001 - a dropped connection, a timeout: watch again
                log.warning("pod watch: %s; retrying", error)
                time.sleep(RETRY_SECONDS)

    def _watch(self, resource_version):
        stream = kube_watch.Watch().stream(self.core.list_namespaced_pod, self.namespace,
                                           resource_version=resource_version,
                                           allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS)
        for event in stream:
            pod = event["raw_object"]
            resource_version = pod["metadata"]["resourceVersion"]
            if event["type"] == "BOOKMARK":
                continue
            uid = pod["metadata"]["uid"]
            previous = self._seen.get(uid, {"metadata": {}})
            self.timeline.observe(event["type"], self.pods, pod, previous)
            if event["type"] == "DELETED":
                self._seen.pop(uid, None)
            else:
                self._seen[uid] = pod
            if self._stopping.is_set():
                break
        return resource_version

    def stop(self):
        self._stopping.set()
        self._thread.join(WATCH_SECONDS + 5)
        self.timeline.close()
