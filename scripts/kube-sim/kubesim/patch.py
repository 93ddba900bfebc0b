"""The three PATCH formats kubectl and client libraries send.

JSON merge patch (RFC 7386) and JSON patch (RFC 6902) are exact. Strategic
merge patch is approximated: lists whose elements carry a known merge key
(containers by name, ports by containerPort, conditions by type, ...) are
merged element by element, `$patch: delete|replace` is honoured, and the
ordering directives (`$setElementOrder/...`, `$retainKeys`) are ignored.
"""

import copy

from .errors import ApiError

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
    "tolerations": "key",
}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_list(target, patch, merge_key):
    if not isinstance(target, list) or not all(
        isinstance(item, dict) and merge_key in item for item in patch
    ):
        return [strategic_merge_patch(None, item) for item in patch]
    result = copy.deepcopy(target)
    for item in patch:
        directive = item.get("$patch")
        index = next((i for i, old in enumerate(result) if old.get(merge_key) == item[merge_key]), None)
        if directive == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def strategic_merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _merge_list(result.get(key), value, MERGE_KEYS[key])
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _invalid_patch(message):
    return ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {message}")


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid_patch(f'invalid JSON pointer "{path}"')
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document, parts):
    node = document
    for part in parts[:-1]:
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise _invalid_patch(f"no element {part}") from None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise _invalid_patch(f'no key "{part}"')
    return node


def _get(document, parts):
    if not parts:
        return document
    parent = _parent(document, parts)
    last = parts[-1]
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (ValueError, IndexError, KeyError):
        raise _invalid_patch(f'no value at "/{"/".join(parts)}"') from None


def _remove(document, parts):
    parent = _parent(document, parts)
    last = parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)
    except (ValueError, IndexError, KeyError):
        raise _invalid_patch(f'no value to remove at "/{"/".join(parts)}"') from None


def _add(document, parts, value):
    if not parts:
        return value
    parent = _parent(document, parts)
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError:
                raise _invalid_patch(f'bad index "{last}"') from None
            if not 0 <= index <= len(parent):
                raise _invalid_patch(f"index {index} out of range")
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _invalid_patch("cannot add into a scalar")
    return document


def json_patch(target, operations):
    if not isinstance(operations, list):
        raise _invalid_patch("a JSON patch must be a list of operations")
    document = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise _invalid_patch("each JSON patch operation needs op and path")
        op, parts = operation["op"], _pointer(operation["path"])
        if op in ("add", "replace"):
            if "value" not in operation:
                raise _invalid_patch(f"{op} needs a value")
            if op == "replace":
                _get(document, parts)
                if parts:
                    _remove(document, parts)
            document = _add(document, parts, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(document, parts)
        elif op == "test":
            if _get(document, parts) != operation.get("value"):
                raise _invalid_patch(f'test failed at "{operation["path"]}"')
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from", ""))
            value = copy.deepcopy(_get(document, source))
            if op == "move":
                _remove(document, source)
            document = _add(document, parts, value)
        else:
            raise _invalid_patch(f'unknown JSON patch operation "{op}"')
    return document
