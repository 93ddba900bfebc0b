"""Resource requests: routing a path to a resource type, authorization, and
the verbs (get, list, watch, create, update, patch, delete, deletecollection)
with kube-apiserver's semantics. Independent of HTTP: server.py calls in."""

import base64
import copy
import json
import time
import urllib.parse
from dataclasses import dataclass

from . import errors, patch, resources, selectors, tables, validation
from .auth import Request

WATCH_DEFAULT_TIMEOUT_SECONDS = 1800


@dataclass
class Route:
    rtype: object
    namespace: str
    name: str
    subresource: str


def route(path):
    """Maps /api/v1/... and /apis/g/v/... to a Route, or None if not a resource path."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    rtype = resources.find(group, version, rest[0])
    if rtype is None:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    if namespace and not rtype.namespaced:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3 or (subresource and subresource not in rtype.subresources):
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    return Route(rtype, namespace, name, subresource)


def query_flag(query, name):
    """A boolean query parameter as Go's strconv.ParseBool reads it."""
    return query.get(name, "") in ("1", "t", "T", "true", "TRUE", "True")


def verb_of(method, route_, query):
    if method == "GET":
        if route_.name:
            return "get"
        return "watch" if query_flag(query, "watch") else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if route_.name else "deletecollection",
    }.get(method)


def _decode_body(body, content_type="application/json"):
    try:
        return json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise errors.bad_request(
            f"the object provided is unrecognized or malformed ({content_type}): {error}"
        ) from None


def _encode_continue(version, after_key):
    token = json.dumps({"rv": version, "after": after_key}).encode()
    return base64.urlsafe_b64encode(token).decode()


def _decode_continue(token):
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return data["rv"], tuple(data["after"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request("continue key is not valid: illegal base64 data") from None


def _check_pod_spec_update(rtype, name, old_spec, new_spec):
    """A pod's spec is immutable but for container images, as in Kubernetes."""
    def without_images(spec):
        spec = json.loads(json.dumps(spec or {}))
        for container in spec.get("containers") or []:
            if isinstance(container, dict):
                container.pop("image", None)
        return spec

    if without_images(old_spec) != without_images(new_spec):
        raise errors.invalid(rtype, name, [(
            "spec", "FieldValueForbidden",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`",
        )])


class Api:
    def __init__(self, store, authorizer, kubelet=None, bookmark_interval=60.0):
        self.store = store
        self.authorizer = authorizer
        self.kubelet = kubelet
        self.bookmark_interval = bookmark_interval

    # --- entry ---------------------------------------------------------------

    def handle(self, user, method, route_, query, headers, body):
        """Returns (status, json_object) or, for a watch, (200, generator)."""
        verb = verb_of(method, route_, query)
        if verb is None:
            raise errors.method_not_allowed()
        self.authorizer.check(
            user,
            Request(verb, route_.rtype, route_.namespace, route_.name, route_.subresource),
        )
        if route_.rtype.namespaced and not route_.namespace and verb not in ("list", "watch"):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        handler = getattr(self, f"_{verb}")
        return handler(route_, query, headers, body)

    # --- reads ---------------------------------------------------------------

    def _get(self, route_, query, headers, body):
        obj = self.store.get(route_.rtype, route_.namespace, route_.name)
        if tables.wants_table(headers):
            return 200, tables.table(route_.rtype, [obj], self.store.resource_version, single=True)
        return 200, obj

    def _predicate(self, query):
        labels = selectors.parse_label_selector(query.get("labelSelector", ""))
        fields = selectors.parse_field_selector(query.get("fieldSelector", ""))
        return lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj)

    def _list(self, route_, query, headers, body):
        rtype = route_.rtype
        items, version = self.store.list(rtype, route_.namespace or None, self._predicate(query))
        meta = {"resourceVersion": str(version)}
        if query.get("continue"):
            version, after = _decode_continue(query["continue"])
            meta["resourceVersion"] = str(version)
            items = [
                obj for obj in items
                if (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) > after
            ]
        limit = int(query.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(int(meta["resourceVersion"]),
                                                [last.get("namespace", ""), last["name"]])
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if tables.wants_table(headers):
            table = tables.table(rtype, items, meta["resourceVersion"])
            table["metadata"].update({k: v for k, v in meta.items() if k != "resourceVersion"})
            return 200, table
        # Items of a typed list carry no kind or apiVersion, as from kube-apiserver.
        for obj in items:
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        return 200, {"kind": rtype.list_kind, "apiVersion": rtype.api_version, "metadata": meta,
                     "items": items}

    def _watch(self, route_, query, headers, body):
        rtype, namespace = route_.rtype, route_.namespace
        predicate = self._predicate(query)
        timeout = float(query.get("timeoutSeconds") or WATCH_DEFAULT_TIMEOUT_SECONDS)
        bookmarks = query_flag(query, "allowWatchBookmarks")
        requested = query.get("resourceVersion", "")
        as_table = tables.wants_table(headers)
        try:
            start = int(requested) if requested not in ("", "0") else None
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{requested}"') from None

        def wrap(event_type, obj):
            if as_table and event_type in ("ADDED", "MODIFIED", "DELETED"):
                obj = tables.table(rtype, [obj], obj["metadata"]["resourceVersion"], single=True)
            return {"type": event_type, "object": obj}

        def stream():
            deadline = time.monotonic() + timeout
            if start is None:
                # No version: the current state as ADDED events, then changes.
                items, version = self.store.list(rtype, namespace or None, predicate)
                for obj in items:
                    yield wrap("ADDED", obj)
            else:
                version = start
            last_bookmark = time.monotonic()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    events, newest = self.store.events_after(version, min(remaining, 1.0))
                except errors.ApiError as error:
                    yield {"type": "ERROR", "object": error.status()}
                    return
                for event in events:
                    version = event.resource_version
                    if event.rtype is not rtype or (namespace and event.namespace != namespace):
                        continue
                    now_matches = predicate(event.obj)
                    before = event.previous is not None and event.type != "ADDED" and predicate(event.previous)
                    if event.type == "DELETED":
                        if before or now_matches:
                            yield wrap("DELETED", event.obj)
                    elif event.type == "ADDED":
                        if now_matches:
                            yield wrap("ADDED", event.obj)
                    elif now_matches and before:
                        yield wrap("MODIFIED", event.obj)
                    elif now_matches:
                        yield wrap("ADDED", event.obj)
                    elif before:
                        # As the watch cache does: the object as it last
                        # matched, at the version of the change.
                        gone = copy.deepcopy(event.previous)
                        gone["metadata"]["resourceVersion"] = str(event.resource_version)
                        yield wrap("DELETED", gone)
                version = max(version, newest)
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                    last_bookmark = time.monotonic()
                    yield {"type": "BOOKMARK", "object": {
                        "kind": rtype.kind, "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(version)},
                    }}
                elif not events:
                    yield None  # lets the server notice a client that went away

        return 200, stream()

    # --- writes --------------------------------------------------------------

    def _ensure_namespace(self, namespace):
        if namespace and not self.store.exists(resources.namespaces(), "", namespace):
            raise errors.not_found(resources.namespaces(), namespace)
        if namespace:
            ns = self.store.get(resources.namespaces(), "", namespace)
            if ns["metadata"].get("deletionTimestamp"):
                raise errors.ApiError(
                    403, "Forbidden",
                    f"unable to create new content in namespace {namespace} because it is being terminated",
                )

    def _check_kind(self, rtype, obj, namespace):
        if not isinstance(obj, dict):
            raise errors.bad_request("the object provided is unrecognized or malformed")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if (api_version and api_version != rtype.api_version) or (kind and kind != rtype.kind):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version})" if api_version != rtype.api_version else
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        body_namespace = meta.get("namespace")
        if rtype.namespaced and body_namespace and body_namespace != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    def _create(self, route_, query, headers, body):
        rtype, namespace = route_.rtype, route_.namespace
        if route_.name:
            raise errors.method_not_allowed()
        obj = _decode_body(body)
        self._check_kind(rtype, obj, namespace)
        name = validation.assign_name(rtype, obj)
        validation.check_metadata_maps(rtype, obj)
        if rtype is resources.pods():
            validation.validate_and_default_pod(rtype, obj)
        if rtype is resources.leases():
            validation.validate_lease(rtype, obj)
        if rtype is resources.namespaces():
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        self._ensure_namespace(namespace)
        if query.get("dryRun") == "All":
            if self.store.exists(rtype, namespace, name):
                raise errors.already_exists(rtype, name)
            return 201, obj
        created = self.store.create(rtype, namespace, obj)
        if self.kubelet is not None and rtype is resources.pods():
            self.kubelet.pod_created(namespace, name, created["metadata"]["uid"])
        return 201, created

    def _apply_write(self, route_, new_obj_of, expected_version=None):
        """Writes new_obj_of(current), computed under the store's lock from
        the stored object, so that a patch applies to the latest version."""
        rtype, subresource = route_.rtype, route_.subresource

        def mutate(current):
            new_obj = new_obj_of(current)
            if subresource == "status":
                current["status"] = new_obj.get("status", {})
                return current
            if rtype is resources.pods():
                _check_pod_spec_update(rtype, route_.name, current.get("spec"), new_obj.get("spec"))
            replacement = new_obj
            if "status" in current and rtype is resources.pods():
                # Clients write the spec; the kubelet writes pod status.
                replacement["status"] = current["status"]
            return replacement

        updated = self.store.update(rtype, route_.namespace, route_.name, mutate, expected_version)
        return updated

    def _update(self, route_, query, headers, body):
        rtype = route_.rtype
        if not route_.name:
            raise errors.method_not_allowed()
        obj = _decode_body(body)
        self._check_kind(rtype, obj, route_.namespace)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != route_.name:
            raise errors.bad_request(
                f'the name of the object ({meta["name"]}) does not match the name on the URL ({route_.name})'
            )
        meta["name"] = route_.name
        validation.check_metadata_maps(rtype, obj)
        if rtype is resources.leases():
            validation.validate_lease(rtype, obj)
            if not meta.get("resourceVersion"):
                # Leases allow no unconditional update (leaseStrategy.AllowUnconditionalUpdate).
                raise errors.invalid(rtype, route_.name, [(
                    "metadata.resourceVersion", "FieldValueInvalid",
                    "Invalid value: 0x0: must be specified for an update",
                )])
        if query.get("dryRun") == "All":
            return 200, obj
        return 200, self._apply_write(route_, lambda current: obj, meta.get("resourceVersion") or None)

    def _patch(self, route_, query, headers, body):
        rtype = route_.rtype
        if not route_.name:
            raise errors.method_not_allowed()
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        apply_patch = {
            "application/merge-patch+json": patch.merge_patch,
            "application/strategic-merge-patch+json": patch.strategic_merge_patch,
            "application/json-patch+json": patch.json_patch,
        }.get(content_type)
        if apply_patch is None:
            raise errors.unsupported_media_type(content_type)
        document = _decode_body(body, content_type)

        def patched_from(current):
            # Applied to the stored object under the store's lock, as the
            # apiserver applies a patch inside its read-modify-write: two
            # concurrent patches of different keys both land.
            patched = apply_patch(current, document)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise errors.bad_request("the patch leaves no object")
            self._check_kind(rtype, patched, route_.namespace)
            patched["metadata"]["name"] = route_.name
            validation.check_metadata_maps(rtype, patched)
            # A resourceVersion the patch sets (metadata.resourceVersion in a
            # merge patch, or a JSON patch op) is a precondition: the
            # apiserver compares the patched object's with the stored one.
            version = patched["metadata"].get("resourceVersion")
            if version and version != current["metadata"].get("resourceVersion"):
                raise errors.conflict(rtype, route_.name)
            return patched

        if query.get("dryRun") == "All":
            return 200, patched_from(self.store.get(rtype, route_.namespace, route_.name))
        return 200, self._apply_write(route_, patched_from)

    def _delete_options(self, query, body):
        options = _decode_body(body) if body else {}
        if not isinstance(options, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        grace = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        try:
            grace = None if grace is None else max(0, int(grace))
        except ValueError:
            raise errors.bad_request(f'invalid gracePeriodSeconds "{grace}"') from None
        return grace, options.get("preconditions")

    def _delete_one(self, rtype, namespace, name, grace, preconditions):
        if rtype is resources.pods():
            current = self.store.get(rtype, namespace, name)
            if grace is None:
                grace = current["spec"].get("terminationGracePeriodSeconds", 30)
            if self.kubelet is None or not current["spec"].get("nodeName"):
                # Never scheduled: nothing to stop, gone at once.
                obj, _ = self.store.remove(rtype, namespace, name, preconditions)
                if self.kubelet is not None:
                    # Out of the scheduler's queue (or, had it just been
                    # bound, the kubelet stops what it began).
                    self.kubelet.pod_deleted(namespace, name, obj["metadata"]["uid"])
                return obj
            obj = self.store.mark_deleted(rtype, namespace, name, grace, preconditions)
            self.kubelet.pod_deleted(namespace, name, obj["metadata"]["uid"])
            return obj
        if rtype is resources.namespaces():
            obj = self.store.mark_deleted(rtype, namespace, name, 0, preconditions)
            if self.kubelet is not None:
                self.kubelet.namespace_deleted(name)
            return obj
        obj, gone = self.store.remove(rtype, namespace, name, preconditions)
        if not gone:
            return obj
        return {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": rtype.group, "kind": rtype.plural,
                        "uid": obj["metadata"]["uid"]},
        }

    def _delete(self, route_, query, headers, body):
        grace, preconditions = self._delete_options(query, body)
        if query.get("dryRun") == "All":
            return 200, self.store.get(route_.rtype, route_.namespace, route_.name)
        return 200, self._delete_one(route_.rtype, route_.namespace, route_.name, grace, preconditions)

    def _deletecollection(self, route_, query, headers, body):
        grace, _ = self._delete_options(query, body)
        items, version = self.store.list(route_.rtype, route_.namespace or None, self._predicate(query))
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            try:
                self._delete_one(route_.rtype, meta.get("namespace", ""), meta["name"], grace, None)
                deleted.append(obj)
            except errors.ApiError as error:
                if error.code != 404:
                    raise
        for obj in deleted:
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        return 200, {"kind": route_.rtype.list_kind, "apiVersion": route_.rtype.api_version,
                     "metadata": {"resourceVersion": str(version)}, "items": deleted}
