"""``params.yaml``'s validation errors as one line each: the file, the line of the offending key, the
key path and what is wrong."""
from __future__ import annotations

import re
from typing import Optional

from pydantic import ValidationError


def _line_of(doc, loc: tuple) -> Optional[int]:
    """1-based line of the deepest key of ``loc`` that exists in the ruamel document."""
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
    return line


def format_validation_error(err: ValidationError, path: str, doc=None) -> str:
    msgs = []
    for e in err.errors():
        # drop the discriminator tags pydantic inserts into the path (datasets.x.source.hub.id)
        clean: list = []
        for p in e["loc"]:
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
        key = key or "<root>"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "missing required key"
        elif e["type"] == "greater_than":
            msg = f"must be > {e['ctx']['gt']}"
        elif e["type"] == "greater_than_equal":
            msg = f"must be >= {e['ctx']['ge']}"
        elif e["type"] == "less_than":
            msg = f"must be < {e['ctx']['lt']}"
        elif e["type"] == "less_than_equal":
            msg = f"must be <= {e['ctx']['le']}"
        line = _line_of(doc, tuple(clean)) if doc is not None else None
        where = f"{path}:{line}" if line else path
        msgs.append(f"{where}: {key}: {msg}")
    return "; ".join(msgs)
