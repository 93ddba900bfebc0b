"""API errors as kube-apiserver reports them: a metav1.Status object."""


class ApiError(Exception):
    """An error answered to the client as a Status with this HTTP code."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(rtype, name, causes=None):
    details = {"kind": rtype.plural}
    if name:
        details["name"] = name
    if rtype.group:
        details["group"] = rtype.group
    if causes:
        details["causes"] = causes
    return details


def not_found(rtype, name):
    return ApiError(
        404, "NotFound", f'{rtype.qualified_plural} "{name}" not found', _details(rtype, name)
    )


def already_exists(rtype, name):
    return ApiError(
        409,
        "AlreadyExists",
        f'{rtype.qualified_plural} "{name}" already exists',
        _details(rtype, name),
    )


def conflict(rtype, name):
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified_plural} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        _details(rtype, name),
    )


def invalid(rtype, name, causes):
    """422: causes is a list of (field, reason, message), as field.ErrorList."""
    shown = "; ".join(f"{field}: {message}" for field, _, message in causes)
    if len(causes) > 1:
        shown = "[" + ", ".join(f"{field}: {message}" for field, _, message in causes) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{rtype.kind} "{name}" is invalid: {shown}',
        # Unlike NotFound and friends, Invalid names the kind, not the resource.
        dict(_details(
            rtype,
            name,
            [{"reason": reason, "message": message, "field": field} for field, reason, message in causes],
        ), kind=rtype.kind),
    )


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def expired(message):
    return ApiError(410, "Expired", message)


def unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message="the server does not allow this method on the requested resource"):
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type):
    return ApiError(
        415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json; got "{content_type}"'
    )


def forbidden(message, rtype=None, name=None):
    details = {"kind": rtype.plural} if rtype else None
    if details is not None:
        if name:
            details["name"] = name
        if rtype.group:
            details["group"] = rtype.group
    return ApiError(403, "Forbidden", message, details)
