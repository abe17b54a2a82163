"""YAML with positions: the file parsed by ruamel (round-trip mode, so every node knows
its line), bounded before any node is built, and locations turned into lines and field
paths for error messages."""

from __future__ import annotations

from typing import Any

from collector.adapters.config.bounds import CORE_TAGS, MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, Loc
from collector.domain.errors import ConfigError, ConfigProblem


def yaml_load(text: str, file: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        _Prescan(yaml, file).run(text)  # before any node is built
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = "; ".join(str(p).strip() for p in (exc.context, exc.problem) if p)
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {reason}")]) from None
    except YAMLError as exc:
        # e.g. a ReaderError (a control character): it knows the offset, not the line.
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        reason = str(exc).split("\n")[0]
        raise ConfigError([ConfigProblem(file, line, "", f"invalid YAML: {reason}")]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # The pre-scan refuses what is known to end here; this is the net below it.
        raise ConfigError([ConfigProblem(file, None, "", f"invalid YAML: {exc}")]) from None


class _Frame:
    """An open mapping or sequence in the event stream."""

    __slots__ = ("anchor", "expect_key", "height", "index", "is_map", "key", "part", "size")

    def __init__(self, is_map: bool, anchor: str | None, part: int | str | None) -> None:
        self.is_map = is_map
        self.anchor = anchor
        self.part = part  # where this collection sits in its parent
        self.size = 1  # nodes, aliases expanded
        self.height = 1  # levels of collections, this one included
        self.expect_key = True
        self.key: int | str | None = None
        self.index = 0


class _Prescan:
    """Bounds the document before ruamel builds it: nesting depth, node count with aliases
    expanded (an alias bomb is refused at a few hundred nodes' cost, never expanded),
    integer literal length (Python refuses to convert more than 4,300 digits), tags
    (a config is plain data: the YAML core tags only) and strings that no store can keep
    (NUL, lone surrogates). ruamel's parser is an iterative state machine; the composer
    and constructor recurse, so the depth check has to come first."""

    def __init__(self, yaml: Any, file: str) -> None:
        self.yaml = yaml
        self.file = file
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (size, height)
        self.total = 0

    def run(self, text: str) -> None:
        from ruamel.yaml.events import (
            AliasEvent,
            CollectionEndEvent,
            CollectionStartEvent,
            MappingStartEvent,
            ScalarEvent,
        )

        for event in self.yaml.parse(text):
            if isinstance(event, CollectionStartEvent):
                part = self._part()
                self._tag(event, part)
                self._grow(event, part, 1, 1)
                self.stack.append(_Frame(isinstance(event, MappingStartEvent),
                                         event.anchor, part))
            elif isinstance(event, CollectionEndEvent):
                frame = self.stack.pop()
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (frame.size, frame.height)
                self._done(frame.size, frame.height, "?")
            elif isinstance(event, ScalarEvent):
                part = self._part()
                self._tag(event, part)
                self._scalar(event, part)
                self._grow(event, part, 1, 0)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (1, 0)
                self._done(1, 0, event.value)
            elif isinstance(event, AliasEvent):
                part = self._part()
                if any(f.anchor == event.anchor for f in self.stack):
                    self._fail(event, part, f"alias *{event.anchor} refers to a collection "
                                            "that contains it")
                size, height = self.anchors.get(event.anchor, (1, 0))
                self._grow(event, part, size, height)
                self._done(size, height, "?")

    def _part(self) -> int | str | None:
        """The key or index of the node that starts now; None for a mapping key."""
        if not self.stack:
            return None
        top = self.stack[-1]
        if not top.is_map:
            return top.index
        return None if top.expect_key else top.key

    def _grow(self, event: Any, part: int | str | None, size: int, height: int) -> None:
        self.total += size
        if len(self.stack) + height > MAX_DEPTH:
            self._fail(event, part, f"nested more than {MAX_DEPTH} levels deep")
        if self.total > MAX_NODES:
            self._fail(event, part, f"more than {MAX_NODES:,} nodes (aliases expanded); "
                                    "a configuration is not that large")

    def _done(self, size: int, height: int, key: Any) -> None:
        if not self.stack:
            return
        top = self.stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if not top.is_map:
            top.index += 1
        elif top.expect_key:
            top.key = key if isinstance(key, str) else "?"
            top.expect_key = False
        else:
            top.expect_key = True

    def _tag(self, event: Any, part: int | str | None) -> None:
        tag = event.tag
        if tag is not None and str(tag) not in CORE_TAGS:
            shown = str(tag).replace("tag:yaml.org,2002:", "!!")
            self._fail(event, part, f"YAML tag {shown} is not allowed: a configuration "
                                    "holds plain data (strings, numbers, booleans, lists, "
                                    "mappings)")

    def _scalar(self, event: Any, part: int | str | None) -> None:
        value: str = event.value
        if "\x00" in value:
            self._fail(event, part, "a NUL character in a string (no store can keep it)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self._fail(event, part, "a lone surrogate (\\ud800-\\udfff) in a string is not "
                                    "valid Unicode")
        if len(value) > MAX_INT_DIGITS and self._is_int(event):
            self._fail(event, part, f"an integer of {len(value):,} characters; at most "
                                    f"{MAX_INT_DIGITS}")

    def _is_int(self, event: Any) -> bool:
        from ruamel.yaml.nodes import ScalarNode

        tag = event.tag
        if tag is None and event.implicit[0]:
            tag = self.yaml.resolver.resolve(ScalarNode, event.value, event.implicit)
        return str(tag) == "tag:yaml.org,2002:int"

    def _fail(self, event: Any, part: int | str | None, message: str) -> None:
        parts = [f.part for f in self.stack[1:]] + ([part] if self.stack else [])
        field = ""
        for item in parts:
            if item is None:
                continue
            field += f"[{item}]" if isinstance(item, int) else (f".{item}" if field else item)
        if len(field) > 100:
            field = field[:97] + "..."
        raise ConfigError([ConfigProblem(self.file, event.start_mark.line + 1, field,
                                         message)])


def plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists, and its scalars (ScalarFloat,
    ScalarInt for 0x1F or 1_000, ScalarBoolean for an anchored true: an int, not a bool) as
    the plain float, int, bool and str they are, so that strict types see what was written."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if type(node).__name__ == "ScalarBoolean":
        return bool(node)
    for kind in (bool, int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def is_tag(node: Any, part: int | str) -> bool:
    """Discriminated unions put their tag ('synthetic') into error paths: not a real key."""
    return isinstance(node, dict) and part not in node and node.get("source") == part


def child(node: Any, part: int | str) -> Any:
    try:
        return node[part]
    except (KeyError, IndexError, TypeError):
        return None


def line_of(root: Any, loc: Loc, *, key: bool = False) -> int | None:
    """1-based line of the value (or key) at a location in the ruamel tree; the nearest
    enclosing line where the location does not exist (a missing field)."""
    node = root
    line: int | None = root.lc.line + 1 if hasattr(root, "lc") else None
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if is_tag(node, part):
            continue
        if isinstance(node, dict) and part in node and hasattr(node, "lc"):
            pos = node.lc.key(part) if (key and last) else node.lc.value(part)
            line = pos[0] + 1
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) and (
            hasattr(node, "lc")
        ):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    return line


def field_path(root: Any, loc: Loc) -> str:
    out = ""
    node = root
    for part in loc:
        if is_tag(node, part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        node = child(node, part)
    return out


