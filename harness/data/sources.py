"""Source registry: each adapter turns a data spec into a Listing of records.

The Listing's class names are the dataset's, and the model's output size follows them: the
spec's class set for AffectNet, that set restricted to the classes the source holds for
FER2013 (its 7) and image folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.registry import Registry
from harness.data.affectnet import list_affectnet
from harness.data.fer2013 import list_fer2013
from harness.data.folder import list_folder
from harness.data.records import Listing
from harness.data.synthetic import ensure_synthetic

if TYPE_CHECKING:
    from harness.spec.schema import DataSpec

SourceAdapter = Callable[["DataSpec", Path, tuple[str, ...]], Listing]
SOURCES: Registry[SourceAdapter] = Registry("data source", plugins="fer_harness.sources")


@SOURCES.register("affectnet")
def affectnet(spec: DataSpec, root: Path, class_names: tuple[str, ...]) -> Listing:
    """A real AffectNet copy (or anything in its on-disk format)."""

    return list_affectnet(root, class_names, name="affectnet")


@SOURCES.register("synthetic")
def synthetic(spec: DataSpec, root: Path, class_names: tuple[str, ...]) -> Listing:
    """The embedded default: generated on first use in AffectNet's format, then read as AffectNet."""

    ensure_synthetic(root, seed=spec.synth_seed, scale=spec.synth_scale, val_per_class=spec.synth_val_per_class)
    return list_affectnet(root, class_names, name="synthetic-affectnet")


@SOURCES.register("fer2013")
def fer2013(spec: DataSpec, root: Path, class_names: tuple[str, ...]) -> Listing:
    """FER2013: its `fer2013.csv` (or a folder holding it), or its `train/<class>/` image folders."""

    return list_fer2013(root, class_names)


@SOURCES.register("folder")
def folder(spec: DataSpec, root: Path, class_names: tuple[str, ...]) -> Listing:
    """Any `<root>/<class>/<image>` tree (or with train/, val/, test/ split folders)."""

    return list_folder(root, class_names)
