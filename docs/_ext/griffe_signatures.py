"""A Griffe extension for the API reference: classes keep their runtime ``__signature__``.

``jaxrnn.nnx``'s layers take their options as ``**options`` and set each class's
``__signature__`` from the option definitions (``jaxrnn/_flax_common.py``), so
``help()`` and ``inspect.signature`` list every keyword. Griffe reads source, not
runtime objects; this extension gives such a class an ``__init__`` with the runtime
parameters, so the reference shows the full signature and the docstring's ``Args``
are checked against it (``mkdocs build --strict``). Named in ``mkdocs.yml``.

A second extension, ``LiteralBlocks``, reads the docstrings' reStructuredText
literal-block marker the way ``help()`` readers do: ``text::`` before an indented
block becomes ``text:``, and a ``::`` line alone disappears. The indented block
that follows is already a code block in Markdown.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe


def _text(value: Any) -> str:
    """Source-like text of a default value or an annotation."""
    if inspect.isclass(value) or inspect.isfunction(value):
        if value.__module__ == "builtins":
            return value.__qualname__
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


class RuntimeSignatures(griffe.Extension):
    """Replaces the constructor of classes that define ``__signature__`` themselves."""

    def on_class(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if not cls.parent or not cls.parent.is_module or not cls.path.startswith("jaxrnn."):
            return
        runtime = getattr(importlib.import_module(cls.parent.path), cls.name, None)
        signature = vars(runtime).get("__signature__") if inspect.isclass(runtime) else None
        if signature is None:
            return
        empty = inspect.Parameter.empty
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        parameters += [
            griffe.Parameter(
                p.name,
                kind=griffe.ParameterKind(p.kind.description),
                annotation=None if p.annotation is empty else _text(p.annotation),
                default=None if p.default is empty else _text(p.default),
            )
            for p in signature.parameters.values()
        ]
        init = griffe.Function(
            "__init__", parameters=griffe.Parameters(*parameters), lineno=cls.lineno
        )
        cls.set_member("__init__", init)


_MARKER_AFTER_TEXT = re.compile(r"(?m)(\S)::[ \t]*$")
_MARKER_ALONE = re.compile(r"(?m)^[ \t]*::[ \t]*\n")


def literal_blocks_as_markdown(text: str) -> str:
    """``text::`` -> ``text:``; a line holding only ``::`` is dropped."""
    return _MARKER_AFTER_TEXT.sub(r"\1:", _MARKER_ALONE.sub("", text))


class LiteralBlocks(griffe.Extension):
    """Drops reStructuredText's ``::`` from jaxrnn's docstrings before they are rendered."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.path.startswith("jaxrnn"):
            obj.docstring.value = literal_blocks_as_markdown(obj.docstring.value)
