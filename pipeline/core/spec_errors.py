"""``params.yaml``'s validation errors as one line each: the file, the line of the offending value
(or key), the key path and what is wrong, with "did you mean" for a misspelled key or tag."""
from __future__ import annotations

import difflib
import re
import typing
from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ValidationError


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> list:
    return [m for m in typing.get_args(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


def _tags(tp: Any, field: str) -> list[str]:
    """The discriminator values of a union's models (``kind``: hub, local)."""
    out = []
    for m in _members(tp):
        f = m.model_fields.get(field)
        if f is not None and typing.get_origin(f.annotation) is typing.Literal:
            out += [str(a) for a in typing.get_args(f.annotation)]
    return out


def _type_at(root: type, loc: tuple) -> Any:
    """The type the spec expects at ``loc`` (pydantic's error path, with its union tags), or None."""
    tp: Any = root
    parts = list(loc)
    while parts:
        tp = _unwrap(tp)
        origin, part = typing.get_origin(tp), str(parts[0])
        if origin is Union:  # a discriminated union's tag is in the path (it consumes no key) ...
            members = _members(tp)
            tagged = [m for m in members if part in _tags(tp, _tag_field(m))]
            if tagged:
                tp = tagged[0]
                parts.pop(0)
            elif len(members) == 1:  # ... an Optional[model] is the model
                tp = members[0]
            else:
                return None
            continue
        parts.pop(0)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            f = tp.model_fields.get(part)
            if f is None:
                return None
            tp = f.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        else:
            return None
    return _unwrap(tp)


def _tag_field(model: type) -> str:
    """A union member's discriminator: its field typed as one Literal value."""
    return next((n for n, f in model.model_fields.items()
                 if typing.get_origin(f.annotation) is typing.Literal and len(typing.get_args(f.annotation)) == 1), "")


def did_you_mean(word: Any, choices) -> str:
    """`` (did you mean 'lr'?)``: the closest spelling, else a key that abbreviates the word or that
    it abbreviates (``learning_rate`` -> ``lr``), else nothing."""
    word, choices = str(word), [str(c) for c in choices]
    initials = lambda w: "".join(p[0] for p in w.split("_") if p)  # noqa: E731
    close = (difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
             or [c for c in choices if "_" in word + c and (initials(word) == c or initials(c) == word)])
    return f" (did you mean {close[0]!r}?)" if close else ""


def _line_of(doc, loc: tuple, value: Any = None) -> Optional[int]:
    """1-based line of the deepest key of ``loc`` that exists in the ruamel document; with ``value``,
    the line of that value inside it (a list item two lines below its key, say), where it is found."""
    node, line = doc, None
    for part in loc:
        try:
            if isinstance(part, str) and hasattr(node, "lc") and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(part, int) and hasattr(node, "lc") and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except Exception:
            break
    if value is not None and line is not None:
        return _line_of_value(node, value) or line
    return line


def _line_of_value(node, value: Any) -> Optional[int]:
    """The line of the first scalar equal to ``value`` inside a ruamel mapping or sequence."""
    if not hasattr(node, "lc"):
        return None
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        if not isinstance(v, (dict, list)) and str(v) == str(value):
            try:
                return (node.lc.value(k) if isinstance(node, dict) else node.lc.item(k))[0] + 1
            except Exception:
                return None
        found = _line_of_value(v, value) if isinstance(v, (dict, list)) else None
        if found:
            return found
    return None


_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def format_validation_error(err: ValidationError, path: str, doc=None, root: Optional[type] = None) -> str:
    """One line per error, ``; ``-joined: ``path:line: key.path: what is wrong``. ``root``: the model
    validated (for "did you mean" and a union's tags)."""
    msgs = []
    for e in err.errors():
        loc, value = e["loc"], None
        # drop the discriminator tags pydantic inserts into the path (datasets.x.source.hub.id)
        clean: list = []
        for p in loc:
            if isinstance(p, str) and p in ("hub", "local", "replay", "openai") and clean and clean[-1] in ("source", "teacher"):
                continue
            clean.append(p)
        key = ".".join(str(p) for p in clean)
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        named = re.match(r"^([A-Za-z_][\w.]*): (.*)$", msg) if e["type"] == "value_error" else None
        if named:  # model checks name their key (relative to the model's place) in the message
            key = f"{key}.{named.group(1)}" if key else named.group(1)
            msg = named.group(2)
            clean = key.split(".")
            quoted = re.match(r"^(?:'([^']*)'|(-?\d+(?:\.\d+)?)\b)", msg)  # the value the message names first
            value = next((g for g in quoted.groups() if g is not None), None) if quoted else None
        elif isinstance(e.get("input"), (str, int, float)) and not isinstance(e.get("input"), bool):
            value = e["input"]
        key = key or "<root>"
        kind = e["type"]
        if kind == "extra_forbidden":
            parent = _type_at(root, loc[:-1]) if root is not None else None
            fields = parent.model_fields if isinstance(parent, type) and issubclass(parent, BaseModel) else ()
            msg, value = "unknown key" + did_you_mean(loc[-1], fields), None
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            field = e["ctx"]["discriminator"].strip("'\"")
            tags = _tags(_type_at(root, loc), field) if root is not None else []
            expected = ", ".join(tags) or e["ctx"].get("expected_tags", "").replace("'", "")
            key = f"{key}.{field}"
            if kind == "union_tag_not_found":
                msg, value = f"missing; one of {expected}", None
            else:
                value = e["ctx"]["tag"]
                msg = f"{value!r} is not one of {expected}" + did_you_mean(value, tags)
            clean = key.split(".")
        elif kind == "missing":
            msg, value = "missing required key", None
        elif kind in _BOUNDS:
            bound, op = _BOUNDS[kind]
            msg = f"must be {op} {e['ctx'][bound]}"
        line = _line_of(doc, tuple(clean), value) if doc is not None else None
        where = f"{path}:{line}" if line else path
        msgs.append(f"{where}: {key}: {msg}")
    return "; ".join(msgs)
