"""One way to read YAML into typed config: dataclasses checked once at the edge (issue 20, item 5).

Manifests, recompute protocols, omni-train configs and the pipelines' corpus file are plain
dataclasses; :func:`load_typed` reads a YAML file into one and :func:`from_mapping` builds one from
a mapping. Every problem in the file is collected and reported in ONE error naming the file and
each key: unknown keys (with the allowed ones), every missing required key at once, wrong types
(``int``, ``float``, ``str``, ``bool``, ``list``, ``tuple``, ``dict``, ``Literal``, ``Enum``,
unions, nested dataclasses) and the value checks an annotation declares with :class:`Check`
(``weight: Annotated[float, Check(non_negative)] = 1.0``)::

    m = load_typed("toy.yaml", Manifest, ManifestError)
    # toy.yaml: keys 'licence', 'citation': required; unknown key 'colour' (allowed: ...)

A field is required when it has no default. ``None`` (an empty YAML value) for a field with a
default means "use the default"; for a required field it counts as missing, as does ``""``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from omni_data.yamlfile import load_yaml

__all__ = [
    "Check",
    "KeyProblem",
    "check_partial",
    "did_you_mean",
    "from_mapping",
    "internal",
    "load_typed",
    "type_name",
]

T = TypeVar("T")
_BAD = object()  # a value that failed its check (the problem is already recorded)
INTERNAL = "omni_internal"


class KeyProblem(ValueError):
    """Raised by a field's check to name a key inside the field: ``key 'FIELD.KEY': MESSAGE``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclasses.dataclass(frozen=True)
class Check:
    """``Annotated[T, Check(fn)]``: after conversion to ``T`` the value is passed to ``fn``; a
    ``ValueError`` it raises becomes ``key 'PATH': MESSAGE`` (``KeyProblem``: ``key 'PATH.KEY'``)."""

    fn: Callable[[Any], None]


def internal(default: Any = "") -> Any:
    """A dataclass field the program fills in (e.g. the file's path); a file giving it is refused."""
    return dataclasses.field(default=default, metadata={INTERNAL: True})


def load_typed(path: str | Path, cls: type[T], error: type[Exception] = ValueError) -> T:
    """Read YAML ``path`` into dataclass ``cls``; every problem raises one ``error`` naming the file."""
    return from_mapping(cls, load_yaml(path, error), str(path), error)


class _Problems(list):  # type: ignore[type-arg]
    """The problems found so far; ``partial``: required keys may be missing (nothing is built)."""

    partial = False


def check_partial(cls: type, data: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Check ``data`` as a fragment of ``cls`` (unknown keys, types, value checks; required keys may
    be missing, as in a protocol file that a PARENT completes); all problems raise one ``error``."""
    problems = _Problems()
    problems.partial = True
    if not isinstance(data, dict):
        raise error(f"{where}: the top level must be a mapping, got a {type(data).__name__}")
    _build(cls, data, "", problems)
    if problems:
        raise error(f"{where}: " + "; ".join(problems))


def from_mapping(
    cls: type[T],
    data: Any,
    where: str,
    error: type[Exception] = ValueError,
    prefix: str = "",
    extra: list[str] | tuple[str, ...] = (),
) -> T:
    """Build dataclass ``cls`` from ``data``; all problems raise one ``error``: ``WHERE: problem; problem``.

    ``extra``: problems the caller found across fields (reported with the rest)."""
    problems = _Problems()
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise error(f"{where}: {f'key {prefix!r}' if prefix else 'the top level'} must be a mapping, got {got}")
    value = _build(cls, data, prefix, problems)
    problems.extend(extra)
    if problems:
        raise error(f"{where}: " + "; ".join(problems))
    return typing.cast(T, value)


def did_you_mean(key: Any, known: Iterable[str]) -> str:
    """``did you mean 'energy'? `` for a near miss among ``known`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _required(f: dataclasses.Field) -> bool:  # type: ignore[type-arg]
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _absent(value: Any) -> bool:
    return value is None or value == ""


def _build(cls: type, data: dict[Any, Any], prefix: str, problems: list[str]) -> Any:
    """``cls(**converted data)``, or ``_BAD`` after appending every problem found to ``problems``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get(INTERNAL)}
    start = len(problems)
    path = lambda key: f"{prefix}.{key}" if prefix else str(key)
    partial = getattr(problems, "partial", False)
    missing = [] if partial else [name for name, f in fields.items() if _required(f) and _absent(data.get(name))]
    if missing:
        keys = ", ".join(repr(path(k)) for k in missing)
        problems.append(f"{'keys' if len(missing) > 1 else 'key'} {keys}: required")
    for key in data:
        if key not in fields:
            problems.append(
                f"unknown key '{path(key)}' ({did_you_mean(key, fields)}allowed: {', '.join(sorted(fields))})"
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data or (data[name] is None and not _required(f) and not _admits_none(hints[name])):
            continue
        if _absent(data[name]) and _required(f):
            continue  # already reported as missing (or allowed missing: partial)
        value = _convert(data[name], hints[name], path(name), problems)
        if value is _BAD:
            continue
        kwargs[name] = value
    if len(problems) > start:
        return _BAD
    return data if partial else cls(**kwargs)


def _admits_none(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp is Any or (typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp))


def type_name(tp: Any) -> str:
    """A reader's name for an annotation: ``a number``, ``one of 'a', 'b'``, ``a list``, ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if dataclasses.is_dataclass(tp) or origin is dict or tp is dict:
        return "a mapping"
    if origin in (list, tuple) or tp in (list, tuple):
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        return f"a list of {len(args)} values" if fixed else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    """``value`` checked against annotation ``tp`` (and converted: list -> tuple, int -> float);
    ``_BAD`` after recording a problem."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _checked(_convert(value, args[0], where, problems), args[1:], where, problems)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return _fail(value, tp, where, problems)
        return _build(typing.cast(type, tp), value, where, problems)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: X's own problems (a nested key's name) are the ones to report
            return _convert(value, arms[0], where, problems)
        for arm in arms:
            trial = _Problems()
            trial.partial = getattr(problems, "partial", False)
            got = _convert(value, arm, where, trial)
            if got is not _BAD:
                return got
        return _fail(value, tp, where, problems)
    if origin is list or origin is tuple:
        return _sequence(value, tp, where, problems)
    if origin is dict:
        if not isinstance(value, dict):
            return _fail(value, tp, where, problems)
        out = {}
        for k, v in value.items():
            got = _convert(v, args[1], f"{where}.{k}", problems)
            if got is not _BAD:
                out[str(k)] = got
        return out if len(out) == len(value) else _BAD
    return _scalar(value, tp, where, problems)


def _checked(value: Any, metadata: tuple[Any, ...], where: str, problems: list[str]) -> Any:
    """``value`` after the ``Check`` s in an ``Annotated`` type's metadata; ``_BAD`` on a problem."""
    if value is _BAD:
        return _BAD
    for check in (m for m in metadata if isinstance(m, Check)):
        try:
            check.fn(value)
        except KeyProblem as exc:
            problems.append(f"key '{where}.{exc.key}': {exc}")
            return _BAD
        except ValueError as exc:
            problems.append(f"key '{where}': {exc}")
            return _BAD
    return value


def _sequence(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        return _fail(value, tp, where, problems)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            return _fail(value, tp, where, problems)
        items = [_convert(v, a, f"{where}[{i}]", problems) for i, (v, a) in enumerate(zip(value, args))]
    else:
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if any(i is _BAD for i in items):
        return _BAD
    return tuple(items) if origin is tuple else items


def _scalar(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return value if value in args else _fail(value, tp, where, problems)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            return _fail(value, tp, where, problems)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        bool: isinstance(value, bool),
        int: number and isinstance(value, int),
        float: number,
        str: number or isinstance(value, str),
    }.get(tp, True)
    if not ok:
        return _fail(value, tp, where, problems)
    return float(value) if tp is float else (str(value) if tp is str else value)


def _fail(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    problems.append(f"key '{where}' must be {type_name(tp)}, got {value!r}")
    return _BAD
