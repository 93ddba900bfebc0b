"""Label and field selectors, parsed as kube-apiserver parses them."""

import re

from .errors import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_BINARY_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!)?\s*(?P<key>{_KEY})\s*$")


def _split_terms(text):
    """Splits on commas outside parentheses: "a in (x,y),b" -> two terms."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def parse_label_selector(text):
    """Returns a predicate over a labels dict; raises a 400 on a bad selector."""
    if not text:
        return lambda labels: True
    requirements = []
    for term in _split_terms(text):
        if match := _SET_RE.match(term):
            values = {value.strip() for value in match["values"].split(",") if value.strip()}
            key, negate = match["key"], match["op"] == "notin"
            # A missing key is "not in" any set, as in kube-apiserver.
            requirements.append(
                lambda labels, key=key, values=values, negate=negate: (labels.get(key) in values) != negate
            )
        elif match := _BINARY_RE.match(term):
            key, value, negate = match["key"], match["value"], match["op"] == "!="
            requirements.append(
                lambda labels, key=key, value=value, negate=negate: (labels.get(key) == value) != negate
            )
        elif match := _EXISTS_RE.match(term):
            key, negate = match["key"], bool(match["neg"])
            requirements.append(lambda labels, key=key, negate=negate: (key in labels) != negate)
        else:
            raise bad_request(f'unable to parse requirement: invalid label selector "{text}"')
    return lambda labels: all(requirement(labels) for requirement in requirements)


def _field_value(obj, path):
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part, "")
    return "" if value is None else str(value)


def parse_field_selector(text):
    """Supports =, == and != on any dotted path (metadata.name, status.phase,
    involvedObject.name, ...); a real server accepts a fixed list per kind."""
    if not text:
        return lambda obj: True
    requirements = []
    for term in text.split(","):
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise bad_request(f'invalid field selector: "{text}"')
        path, op, value = match.groups()
        negate = op == "!="
        requirements.append(
            lambda obj, path=path, value=value, negate=negate: (_field_value(obj, path) == value) != negate
        )
    return lambda obj: all(requirement(obj) for requirement in requirements)
