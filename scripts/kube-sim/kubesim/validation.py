"""Validation and defaulting on create and update, with kube-apiserver's
messages for the cases pod-router meets (names, required pod fields)."""

import datetime
import json
import re
import secrets
import string

from . import errors

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE = re.compile(rf"^{_LABEL}$")
_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")

_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def name_problem(rule, name):
    """The reason a name is invalid under a rule, or None."""
    if rule == "label":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if _LABEL_RE.match(name) else _LABEL_MESSAGE
    if rule == "subdomain":
        if len(name) > 253:
            return "must be no more than 253 characters"
        return None if _SUBDOMAIN_RE.match(name) else _SUBDOMAIN_MESSAGE
    if name in (".", "..") or "/" in name or "%" in name:
        return 'may not contain "/" or "%" and may not be "." or ".."'
    return None


def _quoted(value):
    return '"' + str(value).replace('"', '\\"') + '"'


def assign_name(rtype, obj):
    """metadata.name, or one made from generateName as the apiserver does."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise errors.invalid(rtype, "", [("metadata.name", "FieldValueRequired",
                                          "Required value: name or generateName is required")])
    name = meta.get("name")
    if not name and meta.get("generateName"):
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        name = meta["generateName"] + "".join(secrets.choice(alphabet) for _ in range(5))
        meta["name"] = name
    if not name:
        raise errors.invalid(rtype, "", [("metadata.name", "FieldValueRequired",
                                          "Required value: name or generateName is required")])
    if not isinstance(name, str):
        raise errors.bad_request("metadata.name must be a string")
    problem = name_problem(rtype.name_rule, name)
    if problem:
        raise errors.invalid(rtype, name, [("metadata.name", "FieldValueInvalid",
                                            f"Invalid value: {_quoted(name)}: {problem}")])
    return name


_QUALIFIED_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_RE = re.compile(_QUALIFIED_FMT)
_QUALIFIED_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    f"validation is '{_QUALIFIED_FMT}')"
)
_LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def qualified_name_problems(value):
    """apimachinery's IsQualifiedName: label and annotation keys, an optional
    DNS subdomain prefix and '/', then a name of at most 63 characters."""
    problems = []
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + _QUALIFIED_MESSAGE + " with an optional DNS subdomain "
                "prefix and '/' (e.g. 'example.com/MyName')"]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problem = name_problem("subdomain", prefix)
            if problem:
                problems.append("prefix part " + problem)
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if not _QUALIFIED_RE.fullmatch(name):
        problems.append("name part " + _QUALIFIED_MESSAGE)
    return problems


def label_value_problems(value):
    """apimachinery's IsValidLabelValue."""
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.fullmatch(value):
        problems.append(_LABEL_VALUE_MESSAGE)
    return problems


def check_metadata_maps(rtype, obj):
    """Labels and annotations as ValidateObjectMeta checks them: 422 with
    kube-apiserver's causes (field metadata.labels or metadata.annotations,
    the offending key or value quoted)."""
    meta = obj["metadata"]
    causes = []
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise errors.invalid(rtype, meta["name"], [(f"metadata.{field}", "FieldValueInvalid",
                                                        "Invalid value: must map strings to strings")])
        where = f"metadata.{field}"
        for key, item in value.items():
            # Annotation keys are qualified names in any case.
            for problem in qualified_name_problems(key if field == "labels" else key.lower()):
                causes.append((where, "FieldValueInvalid", f"Invalid value: {_quoted(key)}: {problem}"))
            if field == "labels":
                for problem in label_value_problems(item):
                    causes.append((where, "FieldValueInvalid", f"Invalid value: {_quoted(item)}: {problem}"))
        if field == "annotations" and sum(
                len(k.encode()) + len(v.encode()) for k, v in value.items()) > \
                TOTAL_ANNOTATION_SIZE_LIMIT:
            causes.append((where, "FieldValueTooLong",
                           f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"))
    if causes:
        raise errors.invalid(rtype, meta["name"], causes)


_MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")


def validate_lease(rtype, lease):
    """A Lease as kube-apiserver takes it. acquireTime and renewTime are
    metav1.MicroTime, which Go parses with exactly six fractional digits: any
    other form fails to decode (400). ValidateLeaseSpec then wants a positive
    leaseDurationSeconds and a leaseTransitions of at least 0 (422)."""
    spec = lease.get("spec")
    if spec is None:
        return
    cannot_decode = f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}'
    if not isinstance(spec, dict):
        raise errors.bad_request(f"{cannot_decode}: spec must be an object")
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is None:
            continue
        valid = isinstance(value, str) and _MICRO_TIME_RE.match(value)
        if valid:
            try:
                datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
            except ValueError:
                valid = False
        if not valid:
            raise errors.bad_request(
                f"{cannot_decode}: parsing time {json.dumps(value)} as "
                f'"{_MICRO_TIME_LAYOUT}"'
            )
    causes = []
    for field, least, rule in (("leaseDurationSeconds", 1, "must be greater than 0"),
                               ("leaseTransitions", 0, "must be greater than or equal to 0")):
        value = spec.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise errors.bad_request(f"{cannot_decode}: spec.{field} must be an integer")
        if value < least:
            causes.append((f"spec.{field}", "FieldValueInvalid", f"Invalid value: {value}: {rule}"))
    if causes:
        raise errors.invalid(rtype, lease["metadata"]["name"], causes)


def _qos_class(containers):
    requests_any = limits_any = False
    guaranteed = True
    for container in containers:
        res = container.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        requests_any |= bool(requests)
        limits_any |= bool(limits)
        for resource in ("cpu", "memory"):
            if resource not in limits or requests.get(resource, limits[resource]) != limits[resource]:
                guaranteed = False
    if guaranteed and containers:
        return "Guaranteed"
    return "Burstable" if requests_any or limits_any else "BestEffort"


def validate_and_default_pod(rtype, pod):
    name = pod["metadata"]["name"]
    spec = pod.get("spec")
    causes = []
    if not isinstance(spec, dict):
        raise errors.invalid(rtype, name, [("spec.containers", "FieldValueRequired", "Required value")])
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(("spec.containers", "FieldValueRequired", "Required value"))
        containers = []
    seen = set()
    for index, container in enumerate(containers):
        where = f"spec.containers[{index}]"
        if not isinstance(container, dict):
            causes.append((where, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        cname = container.get("name")
        if not cname:
            causes.append((f"{where}.name", "FieldValueRequired", "Required value"))
        elif not isinstance(cname, str) or name_problem("label", cname):
            causes.append((f"{where}.name", "FieldValueInvalid",
                           f"Invalid value: {_quoted(cname)}: {_LABEL_MESSAGE}"))
        elif cname in seen:
            causes.append((f"{where}.name", "FieldValueDuplicate", f"Duplicate value: {_quoted(cname)}"))
        seen.add(cname)
        if not container.get("image"):
            causes.append((f"{where}.image", "FieldValueRequired", "Required value"))
        for pindex, port in enumerate(container.get("ports") or []):
            number = port.get("containerPort") if isinstance(port, dict) else None
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append((f"{where}.ports[{pindex}].containerPort", "FieldValueInvalid",
                               f"Invalid value: {number}: must be between 1 and 65535, inclusive"))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", "FieldValueNotSupported",
                       f'Unsupported value: {_quoted(policy)}: supported values: "Always", "Never", "OnFailure"'))
    if causes:
        raise errors.invalid(rtype, name, causes)

    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for container in containers:
        image = container["image"]
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for probe_field in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(probe_field)
            if isinstance(probe, dict):
                probe.setdefault("timeoutSeconds", 1)
                probe.setdefault("periodSeconds", 10)
                probe.setdefault("successThreshold", 1)
                probe.setdefault("failureThreshold", 3)
                if isinstance(probe.get("httpGet"), dict):
                    probe["httpGet"].setdefault("scheme", "HTTP")
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(containers)}


def random_suffix(length=10):
    return "".join(secrets.choice(string.hexdigits.lower()[:16]) for _ in range(length))
