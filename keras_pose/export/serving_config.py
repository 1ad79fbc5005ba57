"""TF Serving's ``models.config`` (a ``ModelServerConfig`` text proto) for ``savedmodels/``.

An export adds its model to the file and changes nothing else: the file is read with a small
reader of the protobuf text format (strings, comments, ``{}``/``<>`` blocks, lists), the new
``config { ... }`` entry is inserted before the closing brace of ``model_config_list``, and every
other byte (other models' version policies, labels, base paths, comments) stays as it was. When
``tensorflow-serving-api`` is installed, the result is also parsed with TF Serving's own
``ModelServerConfig`` before it is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable

from keras_pose.utils.atomic import write_text

logger = logging.getLogger(__name__)

CONFIG_NAME = "models.config"
CONTAINER_ROOT = "/models"  # where the README's docker command mounts savedmodels/
MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")

_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>\#[^\n]*)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<open>[{<])|(?P<close>[}>])|(?P<word>[A-Za-z0-9_.+\-]+)|(?P<punct>[:;,\[\]/])""",
    re.VERBOSE,
)
_CLOSING = {"{": "}", "<": ">"}


class ModelsConfigError(ValueError):
    """``models.config`` cannot be read or merged (names the file and the position)."""


def models_config(names: Iterable[str], root: str = CONTAINER_ROOT) -> str:
    """The config text serving every model ``name`` from ``<root>/<name>/<version>/``."""
    entries = "".join(_entry(name, root, "  ") for name in names)
    return f"model_config_list {{\n{entries}}}\n"


def _entry(name: str, root: str, indent: str) -> str:
    inner = indent + "  "
    return (f'{indent}config {{\n{inner}name: "{name}"\n{inner}base_path: "{root}/{name}"\n'
            f'{inner}model_platform: "tensorflow"\n{indent}}}\n')


def config_names(text: str) -> list[str]:
    """Model names declared in a ``models.config`` text, in order."""
    model_list = _model_list(parse_text_proto(text), text)
    return [] if model_list is None else [
        name for name in (_name_of(c) for c in model_list.children if c.name == "config") if name]


def merge_models_config(text: str, name: str, root: str = CONTAINER_ROOT) -> str:
    """``text`` with a ``config`` entry serving ``name``; an entry already there is kept as it
    is (with its version policy and labels), and nothing else changes."""
    fields = parse_text_proto(text)
    model_list = _model_list(fields, text)
    if model_list is None:
        return text.rstrip() + ("\n" if text.strip() else "") + models_config([name], root)
    entries = [c for c in model_list.children if c.name == "config"]
    if name in (_name_of(c) for c in entries):
        return text
    line_start = text.rfind("\n", 0, model_list.end - 1) + 1
    closing_indent = text[line_start:model_list.end - 1]
    if closing_indent.strip():  # the closing brace shares its line with other text
        end = model_list.end - 1
        return text[:end] + "\n" + _entry(name, root, "  ") + text[end:]
    indent = _indent_of(text, entries[-1].start) if entries else closing_indent + "  "
    return text[:line_start] + _entry(name, root, indent) + text[line_start:]


def add_to_models_config(
    directory: str | os.PathLike, name: str, root: str = CONTAINER_ROOT
) -> str:
    """Make ``<directory>/models.config`` serve ``name`` too (merged, written atomically);
    return its path. The file is created if missing; other entries are kept byte for byte."""
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '_', '-' or '.'")
    path = os.path.join(os.fspath(directory), CONFIG_NAME)
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    try:
        merged = merge_models_config(text, name, root)
        check_with_tensorflow_serving(merged)
    except ModelsConfigError as error:
        raise ModelsConfigError(f"{path}: {error}") from None
    if merged != text:
        write_text(merged, path)
    return path


def check_with_tensorflow_serving(text: str) -> None:
    """Parse ``text`` as TF Serving's ``ModelServerConfig`` if ``tensorflow-serving-api`` is
    installed (else the reader's own checks stand)."""
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError:
        return
    try:
        text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ModelsConfigError(f"not a valid ModelServerConfig: {error}") from None


# ------------------------------------------------------------------------------------------
# A reader of the protobuf text format, keeping every field's position in the text


@dataclasses.dataclass
class TextField:
    """One field: its name, where it starts and ends in the text, and its scalar value
    (``value``) or its sub-fields (``children``, for a message)."""

    name: str
    start: int
    end: int
    value: str | None = None
    children: list[TextField] | None = None


def parse_text_proto(text: str) -> list[TextField]:
    """The top-level fields of a protobuf text-format message."""
    tokens = _tokens(text)
    fields, index = _fields(tokens, 0, None, text)
    if index != len(tokens):
        _fail(text, tokens[index][2], f"unexpected {tokens[index][1]!r}")
    return fields


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            _fail(text, position, f"unexpected character {text[position]!r}")
        kind = match.lastgroup
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group(), position))
        position = match.end()
    return tokens


def _fields(tokens, index: int, closing: str | None, text: str) -> tuple[list[TextField], int]:
    fields = []
    while index < len(tokens):
        kind, value, start = tokens[index]
        if kind == "close":
            if value != closing:
                _fail(text, start, f"unexpected {value!r}")
            return fields, index
        if kind != "word":
            _fail(text, start, f"expected a field name, got {value!r}")
        field, index = _field_value(tokens, index + 1, TextField(value, start, start), text)
        fields.append(field)
        while index < len(tokens) and tokens[index][1] in (";", ","):
            index += 1
    if closing is not None:
        _fail(text, len(text), f"missing {closing!r}")
    return fields, index


def _field_value(tokens, index: int, field: TextField, text: str) -> tuple[TextField, int]:
    if index < len(tokens) and tokens[index][1] == ":":
        index += 1
    if index >= len(tokens):
        _fail(text, len(text), f"field {field.name!r} has no value")
    kind, value, start = tokens[index]
    if kind == "open":
        field.children, index = _fields(tokens, index + 1, _CLOSING[value], text)
        if index >= len(tokens):
            _fail(text, len(text), f"missing {_CLOSING[value]!r}")
        field.end = tokens[index][2] + 1
        return field, index + 1
    if value == "[":
        while index < len(tokens) and tokens[index][1] != "]":
            index += 1
        if index >= len(tokens):
            _fail(text, len(text), "missing ']'")
        field.end = tokens[index][2] + 1
        return field, index + 1
    if kind == "string":  # (adjacent strings concatenate)
        parts = []
        while index < len(tokens) and tokens[index][0] == "string":
            parts.append(_unquote(tokens[index][1]))
            field.end = tokens[index][2] + len(tokens[index][1])
            index += 1
        field.value = "".join(parts)
        return field, index
    if kind != "word":
        _fail(text, start, f"field {field.name!r}: unexpected {value!r}")
    field.value, field.end = value, start + len(value)
    return field, index + 1


def _unquote(token: str) -> str:
    return token[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def _model_list(fields: list[TextField], text: str) -> TextField | None:
    names = [f.name for f in fields]
    if "custom_model_config" in names:
        raise ModelsConfigError("holds a custom_model_config; only model_config_list is merged")
    lists = [f for f in fields if f.name == "model_config_list"]
    if len(lists) > 1 or (lists and lists[0].children is None):
        _fail(text, lists[-1].start, "expected one model_config_list { ... }")
    return lists[0] if lists else None


def _name_of(config: TextField) -> str | None:
    names = [f.value for f in config.children or [] if f.name == "name"]
    return names[-1] if names else None


def _indent_of(text: str, position: int) -> str:
    line_start = text.rfind("\n", 0, position) + 1
    prefix = text[line_start:position]
    return prefix if not prefix.strip() else "  "


def _fail(text: str, position: int, message: str):
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    raise ModelsConfigError(f"line {line}, column {column}: {message}")
