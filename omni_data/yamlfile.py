"""Reading a user's YAML file (manifest, ``$OMNI_SOURCES``, protocol, training config) safely.

Only plain YAML is read (``SafeLoader``: a ``!!python/...`` tag is refused, never run), a key
given twice in one mapping is refused rather than silently overwritten, and every failure
becomes one line naming the file and the 1-based line: ``sources.yaml:3: not valid YAML: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["yaml_problem", "load_yaml"]

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """``SafeLoader`` that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {first + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def yaml_problem(path: str | Path, exc: yaml.YAMLError, text: str = "") -> str:
    """One line: ``PATH:LINE: not valid YAML: what (column C)`` from a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):  # bad character: it has a position, not a line
        line = text[: exc.position].count("\n") + 1 if text else None
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        what = f"character #x{char:04x} is not allowed in YAML ({exc.reason})"
        return f"{path}:{line}: not valid YAML: {what}" if line else f"{path}: not valid YAML: {what}"
    what = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    what = " ".join(str(what).split()).replace("tag:yaml.org,2002:", "!!")
    if "constructor for the tag" in what and "python/" in what:
        what += " (Python tags are refused: only plain YAML is read)"
    if mark is None:
        return f"{path}: not valid YAML: {what}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and start.line != mark.line:
        what += f" ({' '.join(str(context).split())} that starts on line {start.line + 1})"
    return f"{path}:{mark.line + 1}: not valid YAML: {what} (column {mark.column + 1})"


def _safe_load(text: str) -> Any:
    """``yaml.safe_load`` with ``_Loader`` (what ``safe_load`` does, with the repeated-key check)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: str | Path, error: type[Exception] = ValueError) -> Any:
    """The plain YAML data in ``path``; a file that is not UTF-8 or not valid YAML raises
    ``error`` with one line naming the file and the line (``OSError`` if it cannot be read)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    try:
        return _safe_load(text)
    except yaml.YAMLError as exc:
        raise error(yaml_problem(path, exc, text)) from None
    except RecursionError:
        raise error(f"{path}: not valid YAML: nested too deeply") from None
