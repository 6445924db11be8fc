"""Source registry: each adapter turns a data spec into a Listing of records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.data.records import Listing
from harness.registry import Registry

if TYPE_CHECKING:
    from harness.spec import DataSpec

SourceAdapter = Callable[["DataSpec", Path, tuple[str, ...]], Listing]
SOURCES: Registry[SourceAdapter] = Registry("data source")


@SOURCES.register("affectnet")
def affectnet(spec: DataSpec, root: Path, class_names: tuple[str, ...]) -> Listing:
    """A real AffectNet copy (or anything in its on-disk format)."""
    from harness.data.affectnet import list_affectnet

    return list_affectnet(root, class_names, name="affectnet")


@SOURCES.register("synthetic")
def synthetic(spec: DataSpec, root: Path, class_names: tuple[str, ...]) -> Listing:
    """The embedded default: generated on first use in AffectNet's format, then read as AffectNet."""
    from harness.data.affectnet import list_affectnet
    from harness.data.synthetic import ensure_synthetic

    ensure_synthetic(root, seed=spec.synth_seed, scale=spec.synth_scale, val_per_class=spec.synth_val_per_class)
    return list_affectnet(root, class_names, name="synthetic-affectnet")
