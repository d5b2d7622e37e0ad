"""Every config key with its type, default and meaning (``sakd config keys [SECTION]``).

The meanings are the comments written beside (or just above) each field of the config's
dataclasses, so the listing and the code cannot drift apart: a new field with a comment is listed
with it. Choices that come from a registry (``model.name``, ``distill.terms``' names ...) are named
by the ``sakd list`` command that shows them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass

from sakd.errors import ConfigError
from sakd.training.config import Config

@dataclass(frozen=True)
class Key:
    """One config key: its dotted name, type, default and meaning."""

    name: str
    type: str
    default: str
    meaning: str


def _comments(cls) -> dict[str, str]:
    """Each field's comment in ``cls``'s source: the one on its line, else the comment lines just above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    inline: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            inline[tok.start[0]] = tok.string.lstrip("#").strip()
    body = ast.parse(textwrap.dedent(source)).body[0].body
    out = {}
    for node in body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        text = inline.get(node.lineno) if lines[node.lineno - 1].split("#")[0].strip() else None
        if text is None or text.startswith("noqa"):
            above, i = [], node.lineno - 1
            while i >= 1 and lines[i - 1].strip().startswith("#"):
                above.insert(0, lines[i - 1].strip().lstrip("#").strip())
                i -= 1
            text = " ".join(above)
        out[node.target.id] = text
    return out


def _type_name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _default(f: dataclasses.Field) -> str:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if value == "" else str(value)


def _choices(f: dataclasses.Field) -> str:
    choices = f.metadata.get("choices")
    if choices is None:
        return ""
    listed = getattr(choices, "listed_by", "")  # a Registered field's: the sakd list command
    return f" (one of the registered names: `{listed}`)" if listed else ""


def config_keys(section: str | None = None, cls=Config, prefix: str = "") -> list[Key]:
    """Every key of the config (or of ``section``: ``model``, ``model.neuron``, ``distill`` ...),
    in the order the dataclasses declare them."""
    if section and section.endswith("[]"):
        return entry_keys(section)
    if section:
        keys = [k for k in config_keys(None, cls, prefix) if k.name == section or k.name.startswith(section + ".")]
        if not keys:
            sections = sorted({k.name.split(".")[0] for k in config_keys()})
            raise ConfigError(f"no config key or section {section!r}; the sections: {', '.join(sections)}")
        return keys
    hints, comments, out = typing.get_type_hints(cls), _comments(cls), []
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):  # a nested section
            out += config_keys(None, hint, f"{prefix}{f.name}.")
            continue
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list and typing.get_args(hint) else None
        meaning = comments.get(f.name, "") + _choices(f)
        if inner is not None and is_dataclass(inner):  # a list of sections (distill.terms)
            item = ", ".join(k.name.rsplit(".", 1)[-1] for k in config_keys(None, inner, ""))
            meaning += f" (each entry: {item}; see `sakd config keys {prefix}{f.name}[]`)"
        out.append(Key(prefix + f.name, _type_name(hint), _default(f), meaning.strip()))
    return out


def entry_keys(name: str) -> list[Key]:
    """The keys of each entry of a list of sections (``distill.terms[]``)."""
    path = name.removesuffix("[]").split(".")
    cls = Config
    for part in path:
        hint = typing.get_type_hints(cls).get(part)
        if hint is None:
            raise ConfigError(f"no config key {name!r}")
        cls = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
    if not is_dataclass(cls):
        raise ConfigError(f"{name.removesuffix('[]')!r} is not a list of sections")
    return config_keys(None, cls, name + ".")
