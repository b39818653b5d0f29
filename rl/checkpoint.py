"""Checkpoints without pickle: a pytree's leaves and their metadata in one ``.npz``.

The ``.npz`` is the commit point: `save` writes the leaves (``leaf_00000``, ...) and the metadata (JSON
bytes, ``metadata``) into one file and renames it into place, so whatever the metadata counts (for a
trainer: updates done, metrics rows written) always describes the leaves beside it, and a crash at any
moment leaves either the previous checkpoint or the new one, whole. A readable copy of the metadata
goes to ``path.with_suffix('.json')`` afterwards; `load` never reads it, except for checkpoints of
agentlab <= 0.1.0, whose ``.npz`` holds only the leaves.

Loading needs a template pytree of the same structure (for a learner, a fresh `init`), and checks
that every leaf's shape and dtype match, so a checkpoint from another configuration is refused
instead of silently misread. Every problem with the files (missing, truncated, corrupt, not an
archive, foreign) is a one-line `UsageError` naming the file.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orjson

from agentlab.errors import UsageError
from agentlab.rundir import atomic_write, file_error, read_json_file, write_json

METADATA = "metadata"  # the archive member holding the metadata as UTF-8 JSON bytes (uint8)
CORRUPT = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)


def save(path: Path, tree: Any, metadata: dict) -> None:
    """Commit `tree`'s leaves and `metadata` (plus ``leaves``, their number) to `path` (``.npz``) by one
    atomic rename, then write the readable copy ``path.with_suffix('.json')``."""
    path = Path(path)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    metadata = {**metadata, "leaves": len(leaves)}
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays[METADATA] = np.frombuffer(orjson.dumps(metadata, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    write_json(path.with_suffix(".json"), metadata)


def load(path: Path, template: Any) -> tuple[Any, dict]:
    """``(tree, metadata)``: the leaves of `path` in the structure of `template`, and their metadata."""
    path = Path(path)
    leaves, metadata = _read(path)
    if metadata is None:  # agentlab <= 0.1.0: the metadata beside the leaves, written after them
        metadata = read_json_file(path.with_suffix(".json"), "checkpoint metadata")
        if not isinstance(metadata, dict):
            raise UsageError(f"checkpoint metadata {path.with_suffix('.json')} is not a JSON object (corrupt?)")
    if metadata.get("leaves", len(leaves)) != len(leaves):
        raise UsageError(
            f"checkpoint {path} holds {len(leaves)} arrays but its metadata says {metadata.get('leaves')!r} (corrupt?)"
        )
    expected = jax.tree.leaves(template)
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


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _read(path: Path) -> tuple[list[np.ndarray], dict | None]:
    """The leaves of the archive `path` and its metadata (None for a checkpoint without any)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise file_error(f"checkpoint {path}", error) from None
    except ValueError:  # neither a zip nor an .npy: numpy took it for a pickle
        raise UsageError(f"checkpoint {path} is not an .npz archive (corrupt or foreign)") from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise UsageError(f"checkpoint {path} is truncated or corrupt: {_first_line(error)}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UsageError(f"checkpoint {path} is a single .npy array, not an .npz archive of a learner state")
    with data:
        try:
            names = set(data.files)
            count = sum(name.startswith("leaf_") for name in names)
            leaves = [data[f"leaf_{i:05d}"] for i in range(count)]
            raw = data[METADATA] if METADATA in names else None
        except CORRUPT as error:
            raise UsageError(f"checkpoint {path} is truncated or corrupt: {_first_line(error)}") from None
    unexpected = sorted(names - {METADATA} - {f"leaf_{i:05d}" for i in range(count)})
    if unexpected:
        raise UsageError(f"checkpoint {path} holds unexpected arrays {unexpected[:3]} (corrupt or foreign)")
    if raw is None:
        return leaves, None
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"a {raw.dtype}{list(raw.shape)} array")
        metadata = orjson.loads(raw.tobytes())
    except (ValueError, orjson.JSONDecodeError) as error:
        raise UsageError(f"checkpoint {path}: its metadata is not JSON (corrupt?): {_first_line(error)}") from None
    if not isinstance(metadata, dict):
        raise UsageError(f"checkpoint {path}: its metadata is not a JSON object (corrupt?)")
    return leaves, metadata
