"""pydantic's validation errors as ConfigProblems: file, line, field path, the bad value
(never a secret's) and what was expected."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from collector.adapters.config.bounds import SECRET_FIELDS, Loc
from collector.adapters.config.yaml_source import child, field_path, is_tag, line_of
from collector.domain.errors import ConfigProblem


def _unwrap(annotation: Any, node: Any) -> Any:
    """Strip Optional and Annotated; choose a tagged-union member by the node's 'source'."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) > 1 and isinstance(node, dict):
                tagged = [m for m in members if _source_tag(m) == node.get("source")]
                members = tagged or members
            annotation = members[0]
        else:
            return annotation


def _source_tag(model: Any) -> Any:
    field = getattr(model, "model_fields", {}).get("source")
    return get_args(field.annotation)[0] if field is not None else None


def _allowed_keys(top: Any, node: Any, loc: Loc) -> list[str]:
    """The keys accepted by the mapping at loc (relative to a document validated as top)."""
    annotation: Any = top
    for part in loc:
        annotation = _unwrap(annotation, node)
        if is_tag(node, part):
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return []
        node = child(node, part)
    annotation = _unwrap(annotation, node)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sorted(annotation.model_fields)
    return []


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_from(exc: ValidationError, file: str, root: Any, top: Any,
                   prefix: Loc = ()) -> list[ConfigProblem]:
    """Pydantic errors as ConfigProblems; prefix locates a sub-document validated alone."""
    sub = root
    for part in prefix:
        sub = sub[part]
    problems = []
    for err in exc.errors(include_url=False):
        rel = tuple(err["loc"])
        loc = prefix + rel
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(top, sub, rel[:-1])
            message = "unknown key" + (f"; expected one of: {', '.join(allowed)}"
                                       if allowed else "")
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            secret = bool(rel) and rel[-1] in SECRET_FIELDS
            if not isinstance(err.get("input"), dict | list) and "input" in err and not secret:
                message = f"{message} (got {short(err['input'])})"
        problems.append(ConfigProblem(
            file, line_of(root, loc, key=kind in ("extra_forbidden", "missing")),
            field_path(root, loc), message))
    return problems


