"""Checkpoints without pickle: a pytree's leaves in one ``.npz`` plus JSON metadata beside it.

Loading needs a template pytree of the same structure (for a learner, a fresh `init`), and checks
that every leaf's shape and dtype match, so a checkpoint from another configuration is refused
instead of silently misread. Files are written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import jax
import numpy as np

from agentlab.errors import UsageError
from agentlab.rundir import atomic_write, read_json, write_json


def save(path: Path, tree: Any, metadata: dict) -> None:
    """Write ``path`` (``.npz``) and ``path.with_suffix('.json')``; the JSON is written last."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    buffer = io.BytesIO()
    np.savez(buffer, **{f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)})
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(buffer.getvalue()))
    write_json(Path(path).with_suffix(".json"), {**metadata, "leaves": len(leaves)})


def load(path: Path, template: Any) -> tuple[Any, dict]:
    """``(tree, metadata)``: the leaves of ``path`` in the structure of `template`."""
    path = Path(path)
    metadata = read_json(path.with_suffix(".json"))
    expected = jax.tree.leaves(template)
    with np.load(path, allow_pickle=False) as data:
        leaves = [data[f"leaf_{i:05d}"] for i in range(len(data.files))]
    if len(leaves) != len(expected):
        raise UsageError(f"checkpoint {path} has {len(leaves)} arrays, this configuration needs {len(expected)}")
    for i, (got, want) in enumerate(zip(leaves, expected)):
        if got.shape != np.shape(want) or got.dtype != np.asarray(want).dtype:
            raise UsageError(
                f"checkpoint {path}: array {i} is {got.dtype}{list(got.shape)}, "
                f"this configuration needs {np.asarray(want).dtype}{list(np.shape(want))}"
            )
    treedef = jax.tree.structure(template)
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(leaf) for leaf in leaves]), metadata
