"""Frozen dataclasses that are JAX pytrees.

Fields are pytree leaves (traced under `jit`, mapped by `vmap`) unless declared with
`static_field()`, which puts them in the tree structure: changing a static field recompiles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

T = TypeVar("T")


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the pytree structure, not a leaf."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Make `cls` a frozen dataclass registered as a pytree, with a `.replace(**changes)` method."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    data, meta = [], []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        (meta if f.metadata.get("static") else data).append(f.name)
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    cls.replace = dataclasses.replace  # type: ignore[attr-defined]
    return cls
