"""Reading pipeline text (YAML or JSON) into plain data, fast when nothing needs reporting.

Contract:

- `read_fast(text, fmt)` returns the document's plain data, or `SLOW` when it cannot vouch for
  it: the file has a syntax error, anchors or aliases, merge keys, explicit tags, duplicate
  keys, non-string keys, nesting deeper than `FAST_MAX_DEPTH`, more than `MAX_EXPANDED_NODES`
  values, or is empty. It keeps no line numbers. Whatever it returns is exactly what `parse`
  returns for the same text: it reads LibYAML's events and resolves and builds scalars with the
  same table and constructor as the line-tracking loaders.
- `parse(text, file, fmt)` is the careful reader: a `Parsed` with the data, a side table of
  line numbers by path (`("nodes", 3)` -> the line of the fourth node, `("nodes", 3,
  "command")` -> the line of its command) and the issues of the text itself (syntax, refused
  tags, duplicate keys, alias bombs, nesting too deep, empty file). The loader calls it only
  when the fast read says `SLOW` or validation has something to report, so line numbers are
  worked out only when an issue will show them.
- YAML: `yaml.SafeLoader`'s composer and constructor, over LibYAML's parser when PyYAML has it
  (a document LibYAML refuses is read again by PyYAML's own parser, whose messages and verdict
  stand): only plain data; any other tag (`!!python/object`, ...) is refused. Booleans follow
  YAML 1.2 (`true`/`false` only), so `on:` stays a key and `MODE: yes` a string; every other
  scalar reads as PyYAML's YAML 1.1 safe loader reads it (`0755` is 493, `1:30` is 5400,
  `2024-01-02` a date). Aliases may not expand to more than `MAX_EXPANDED_NODES` values.
- JSON: chosen by the caller's `fmt` or when the text starts with `{`; a syntax error gives its
  line; duplicate keys are reported.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias

import yaml

from engine.errors import ValidationIssue
from engine.loader.issues import LinePath, node_id_at

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FAST_MAX_DEPTH", "MAX_EXPANDED_NODES", "SLOW", "Format", "Parsed", "parse", "read_fast"]

MAX_EXPANDED_NODES = 500_000
# Deeper documents take the careful path, which reports "nested too deeply" where Python's
# recursion gives out; no pipeline nests anywhere near this.
FAST_MAX_DEPTH = 64

Format: TypeAlias = Literal["yaml", "json"]


class _Slow:
    def __repr__(self) -> str:
        return "SLOW"


SLOW: Final = _Slow()


@dataclass
class Parsed:
    data: Any
    lines: dict[LinePath, int]
    issues: list[ValidationIssue]


def sniff(text: str, fmt: Format | None) -> Format:
    if fmt is not None:
        return fmt
    return "json" if text.lstrip("\ufeff \t\r\n").startswith("{") else "yaml"


def parse(text: str, file: str | None, fmt: Format | None) -> Parsed:
    """The data, its line table and the text's own issues (see the module's contract)."""
    return _parse_json(text, file) if sniff(text, fmt) == "json" else _parse_yaml(text, file)


_Duplicate: TypeAlias = tuple[LinePath, str, int, int]  # path, key, first line, this line
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"


class _Yaml12Resolver(yaml.resolver.Resolver):
    """YAML 1.2 booleans: 1.1 reads yes/no/on/off as booleans, but a pipeline's `on:` key and
    `MODE: yes` must stay text (own copy of the table; PyYAML's loaders are untouched)."""


_Yaml12Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Yaml12Resolver.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _LocatingConstructor(yaml.constructor.SafeConstructor):
    """`SafeConstructor` whose value errors are located YAML errors."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A well-formed scalar Python cannot build (`2024-13-45`, an int of 5,000 digits)
        # raises a bare ValueError in PyYAML; make it a located YAML error like the others.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid value {str(node.value)[:40]!r}: {exc}", node.start_mark
            ) from None


class _SafeLineLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _LocatingConstructor,
    _Yaml12Resolver,
):
    """`yaml.SafeLoader`, all in Python, with YAML 1.2 booleans and located value errors."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _LocatingConstructor.__init__(self)
        _Yaml12Resolver.__init__(self)


class _LineLoader(Protocol):
    def get_single_node(self) -> yaml.Node | None: ...
    def construct_document(self, node: yaml.Node) -> Any: ...
    def dispose(self) -> None: ...


_LINE_LOADERS: tuple[Callable[[str], _LineLoader], ...] = (_SafeLineLoader,)

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _FastLineLoader(
        yaml.composer.Composer,  # before CParser, whose own composing methods it overrides
        CParser,
        _LocatingConstructor,
        _Yaml12Resolver,
    ):
        """The same loader with LibYAML scanning and parsing: about six times as fast.

        Composing stays in Python (`Composer` before `CParser`): LibYAML's own composer
        recurses in C and crashes the process on deeply nested input, where Python's raises
        `RecursionError`, reported. LibYAML's parser is iterative; everything from its events
        on (anchors and aliases, tags, the safe constructor, YAML 1.2 booleans, marks) is
        PyYAML's Python code, as in `_SafeLineLoader`.
        """

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            _LocatingConstructor.__init__(self)
            _Yaml12Resolver.__init__(self)

    # LibYAML's first. Text it refuses (or cannot encode: lone surrogates) is read again by
    # Python's, so that every problem is reported in PyYAML's words, with PyYAML's verdict.
    _LINE_LOADERS = (_FastLineLoader, _SafeLineLoader)


def _load_with_lines(
    loader: _LineLoader,
) -> tuple[Any, dict[LinePath, int], list[_Duplicate]]:
    """The document, its line table and its duplicate keys as (path, key, first line)."""
    root = loader.get_single_node()
    if root is None:
        return None, {}, []
    _check_expansion(root)
    lines: dict[LinePath, int] = {}
    duplicates: list[_Duplicate] = []
    _walk(root, (), lines, duplicates)  # before construction flattens `<<` merges
    return loader.construct_document(root), lines, duplicates


class _TooLarge(Exception):
    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases and alias "bombs" before they are expanded into data."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    aliased = False  # whether a node was met twice (an alias): only then is it a "bomb"

    def size(node: yaml.Node) -> int:
        nonlocal aliased
        key = id(node)
        if key in sizes:
            aliased = True
            return sizes[key]
        if key in active:
            raise _TooLarge("a YAML alias refers to itself", node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        active.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise _TooLarge(
                f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values"
                if aliased
                else f"the file holds more than {MAX_EXPANDED_NODES:,} values, too many for a "
                "pipeline",
                node.start_mark.line + 1,
            )
        sizes[key] = total
        return total

    size(root)


def _walk(
    node: yaml.Node,
    path: LinePath,
    lines: dict[LinePath, int],
    duplicates: list[_Duplicate],
) -> None:
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                duplicates.append(((*path, key), key, first_seen[key], line))
                continue
            first_seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, duplicates)


def _yaml_issue(exc: yaml.YAMLError, file: str | None) -> ValidationIssue:
    if isinstance(exc, yaml.constructor.ConstructorError) and exc.problem_mark is not None:
        line = exc.problem_mark.line + 1
        tag = _tag_in(exc.problem or "")
        if tag:
            return ValidationIssue(
                f"YAML tag {tag} is refused: a pipeline file holds plain data only "
                "(mappings, lists, strings, numbers, booleans)",
                file=file,
                line=line,
            )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        problem += next((hint for text, hint in _YAML_HINTS if text in problem), "")
        if mark is None:
            return ValidationIssue(f"YAML syntax error: {problem}", file=file)
        return ValidationIssue(
            f"YAML syntax error: {problem} (line {mark.line + 1}, column {mark.column + 1})",
            file=file,
            line=mark.line + 1,
        )
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        return ValidationIssue(
            f"YAML syntax error: character {shown} is not allowed in YAML text",
            file=file,
        )
    return ValidationIssue(f"YAML syntax error: {exc}", file=file)


_YAML_HINTS = (
    ("expected <block end>", "; check the indentation"),
    ("mapping values are not allowed", "; check the indentation, or quote a value with ': '"),
    ("found character '\\t'", "; indent with spaces, not tabs"),
)


def _tag_in(problem: str) -> str | None:
    match = re.search(r"tag '([^']*)'", problem)
    if match is None:
        return None
    tag = match.group(1)
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


def _parse_yaml(text: str, file: str | None) -> Parsed:
    for make in _LINE_LOADERS[:-1]:
        with contextlib.suppress(yaml.YAMLError, UnicodeEncodeError):
            return _parse_yaml_with(make, text, file)
    try:
        return _parse_yaml_with(_LINE_LOADERS[-1], text, file)
    except yaml.YAMLError as exc:
        return Parsed(None, {}, [_yaml_issue(exc, file)])


def _parse_yaml_with(make: Callable[[str], _LineLoader], text: str, file: str | None) -> Parsed:
    """The document read by `make(text)`; raises `yaml.YAMLError` for a YAML problem."""
    loader = make(text)  # Python's reader refuses control characters already here
    try:
        data, lines, duplicates = _load_with_lines(loader)
    except _TooLarge as exc:
        return Parsed(None, {}, [ValidationIssue(exc.reason, file=file, line=exc.line)])
    except RecursionError:
        return Parsed(None, {}, [ValidationIssue("the YAML is nested too deeply", file=file)])
    finally:
        loader.dispose()
    if data is None:
        return Parsed(None, {}, [ValidationIssue("the file is empty", file=file)])
    return Parsed(data, lines, _duplicate_issues(duplicates, data, file))


def _duplicate_issues(
    duplicates: list[_Duplicate], data: Any, file: str | None
) -> list[ValidationIssue]:
    return [
        ValidationIssue(
            f"duplicate key '{key}' (first on line {first}); a mapping names each key once",
            file=file,
            line=line,
            node_id=node_id_at(data, path),
        )
        for path, key, first, line in duplicates
    ]


def _parse_json(text: str, file: str | None) -> Parsed:
    duplicate_keys: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicate_keys.append(key)
            out[key] = value
        return out

    try:
        data = json.loads(text.lstrip("\ufeff"), object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        return Parsed(
            None,
            {},
            [
                ValidationIssue(
                    f"JSON syntax error: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    file=file,
                    line=exc.lineno,
                )
            ],
        )
    except RecursionError:
        return Parsed(None, {}, [ValidationIssue("the JSON is nested too deeply", file=file)])
    except ValueError as exc:  # e.g. an integer with more digits than int() accepts
        return Parsed(None, {}, [ValidationIssue(f"JSON value cannot be read: {exc}", file=file)])
    if data is None:  # `null`: as empty as an empty YAML file, and said so
        reason = "the top level must be a mapping with 'id' and 'nodes', not null"
        return Parsed(None, {}, [ValidationIssue(reason, file=file, line=1)])
    lines, yaml_duplicates = _yaml_lines(text)
    if yaml_duplicates is not None:
        issues = _duplicate_issues(yaml_duplicates, data, file)
    else:
        issues = [ValidationIssue(f"duplicate key '{k}'", file=file) for k in duplicate_keys]
    return Parsed(data, lines, issues)


def _yaml_lines(text: str) -> tuple[dict[LinePath, int], list[_Duplicate] | None]:
    """JSON is (nearly) YAML, so the YAML walker can usually supply its line table and
    duplicate keys; best effort only: `({}, None)` when it cannot."""
    for make in _LINE_LOADERS:
        lines: dict[LinePath, int] = {}
        duplicates: list[_Duplicate] = []
        loader: _LineLoader | None = None
        try:
            loader = make(text)
            root = loader.get_single_node()
            if root is not None:
                _walk(root, (), lines, duplicates)
            return lines, duplicates if root is not None else None
        except (yaml.YAMLError, UnicodeEncodeError):
            continue
        except RecursionError:
            break
        finally:
            if loader is not None:
                loader.dispose()
    return {}, None


# ---------------------------------------------------------------------------------------------
# the fast read: no line numbers, nothing to report


class _NotFast(Exception):
    """The text needs the careful reader (it has something to report, or something unusual)."""


def read_fast(text: str, fmt: Format | None) -> Any:
    """The document's data, or `SLOW` (see the module's contract)."""
    if sniff(text, fmt) == "json":
        return _json_fast(text)
    if not yaml.__with_libyaml__:
        return SLOW
    try:
        return _yaml_fast(text)
    except (_NotFast, yaml.YAMLError, UnicodeError, ValueError, TypeError, OverflowError):
        return SLOW  # the careful reader says what is wrong, in PyYAML's words


def _json_fast(text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            raise _NotFast  # a duplicate key, reported with its line by the careful reader
        return out

    try:
        data = json.loads(text.lstrip("\ufeff"), object_pairs_hook=pairs)
    except (_NotFast, ValueError, RecursionError):
        return SLOW
    return SLOW if data is None else data


# Scalar values repeat (`type: python`, `needs: [...]` ids); building each distinct plain scalar
# once per document halves the cost of the 10,000-node file. Values are immutable (str, int,
# float, bool, None, date), so sharing them is safe.
_PLAIN_CACHE_LIMIT = 100_000


def _yaml_fast(text: str) -> Any:
    """Build plain data straight from LibYAML's events, in one loop without recursion.

    `_FastLineLoader` does the same through PyYAML's composer (a `yaml.Node` with two marks per
    value) and constructor (a generator per mapping): about six times the cost. Anything this
    loop does not handle raises `_NotFast`.
    """
    from yaml._yaml import CParser  # only with LibYAML; read_fast checked

    events = yaml.events
    scalar_event, mapping_start, sequence_start = (
        events.ScalarEvent,
        events.MappingStartEvent,
        events.SequenceStartEvent,
    )
    mapping_end, sequence_end = events.MappingEndEvent, events.SequenceEndEvent
    resolvers = _Yaml12Resolver.yaml_implicit_resolvers
    wildcard = resolvers.get(None, [])
    constructor = _LocatingConstructor()
    plain: dict[str, Any] = {}
    no_key = object()

    parser = CParser(text)
    try:
        get = parser.get_event
        get()  # StreamStart
        if not isinstance(get(), events.DocumentStartEvent):
            raise _NotFast  # an empty stream
        # `top` is the innermost open container (None at the top level), `key` its pending key
        # (`no_key` when the next value of a mapping is a key); `outer` saves the enclosing ones.
        top: Any = None
        top_is_list = False
        key: Any = no_key
        outer: list[tuple[Any, bool, Any]] = []
        count = 0
        root: Any = no_key
        while root is no_key:
            event: Any = get()
            kind = type(event)
            if kind is scalar_event:
                if event.tag is not None or event.anchor is not None:
                    raise _NotFast
                value = event.value
                item: Any = value
                if event.implicit[0]:
                    if value in plain:
                        item = plain[value]
                    else:
                        tag = _STR_TAG
                        for candidate, regexp in resolvers.get(value[:1], []) + wildcard:
                            if regexp.match(value):
                                tag = candidate
                                break
                        item = _scalar(constructor, tag, value)
                        if len(plain) < _PLAIN_CACHE_LIMIT:
                            plain[value] = item
            elif kind is mapping_start or kind is sequence_start:
                if event.tag is not None or event.anchor is not None:
                    raise _NotFast
                if key is no_key and top is not None and not top_is_list:
                    raise _NotFast  # a mapping or list as a key
                if len(outer) >= FAST_MAX_DEPTH:
                    raise _NotFast
                outer.append((top, top_is_list, key))
                top_is_list = kind is sequence_start
                top = [] if top_is_list else {}
                key = no_key
                count += 1
                continue
            elif kind is mapping_end or kind is sequence_end:
                item = top
                top, top_is_list, key = outer.pop()
                if top is None:
                    root = item
                    continue
            else:
                raise _NotFast  # an alias
            count += 1
            if count > MAX_EXPANDED_NODES:
                raise _NotFast
            if top_is_list:
                top.append(item)
            elif key is no_key:
                if top is None:
                    root = item  # a document that is one scalar
                elif type(item) is not str or item in top:
                    raise _NotFast  # a duplicate key, or one the careful reader must judge
                else:
                    key = item
            else:
                top[key] = item
                key = no_key
        if not isinstance(get(), events.DocumentEndEvent):
            raise _NotFast
        if not isinstance(get(), events.StreamEndEvent):
            raise _NotFast  # a second document: the careful reader says so
    finally:
        parser.dispose()
    if root is None:
        raise _NotFast  # `~` or an empty document: "the file is empty"
    return root


def _scalar(constructor: _LocatingConstructor, tag: str, value: str) -> Any:
    if tag == _STR_TAG:
        return value
    if tag == _NULL_TAG:
        return None
    if tag == _BOOL_TAG:
        return value.lower() == "true"
    if tag == _MERGE_TAG or tag not in constructor.yaml_constructors:
        raise _NotFast  # `<<` merges, `=` values
    return constructor.yaml_constructors[tag](constructor, yaml.ScalarNode(tag, value))
