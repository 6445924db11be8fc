"""The one builder of a network from a spec, and of the model a run trains or left behind.

A *network* is the registered model (harness.models.registry) sized for the data: its classes,
channels and image size. A *model* is that network behind an input layer (harness.models.inputs)
holding the training set's standardisation or ZCA statistics as buffers, so a saved state_dict
carries its own preprocessing. The spec layer's meta-device check, training and every reader
of logged weights build through these functions.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import TrackingError, first_line
from harness.models.inputs import placeholder_input_layer, with_input_layer
from harness.models.registry import create_model

if TYPE_CHECKING:
    import torch

    from harness.data.dataset import Dataset
    from harness.spec.schema import DataSpec, ExperimentSpec, ModelSpec


def build_network(model: ModelSpec, *, num_classes: int, data: DataSpec) -> Any:
    """The registered network `model` names, for `num_classes` outputs and the data's input shape."""
    return create_model(
        model.name, num_classes=num_classes, in_channels=data.channels, image_size=data.image_size, **model.params
    )


def build_model(spec: ExperimentSpec, data: Dataset) -> Any:
    """A new model for `spec`: seeded network behind an input layer fitted on the training images."""
    import torch

    torch.manual_seed(spec.train.seed)
    net = build_network(spec.model, num_classes=data.num_classes, data=spec.data)
    return with_input_layer(net, data.x_train, spec.data.whitening, spec.train.seed)


def rebuild_model(spec: ExperimentSpec, num_classes: int, weights: Path, run_id: str = "") -> torch.nn.Module:
    """The model a run trained: its network behind a placeholder input layer, then the logged
    state_dict loaded into both (the input layer's statistics are buffers, so they come with it)."""
    import torch

    net = build_network(spec.model, num_classes=num_classes, data=spec.data)
    model = torch.nn.Sequential(placeholder_input_layer(spec.data), net)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # not plain tensors: never unpickled with code
        raise TrackingError(f"run {run_id}: model/weights.pt refused by the safe loader: {first_line(exc)}") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        raise TrackingError(f"run {run_id}: model/weights.pt does not fit its spec: {first_line(exc)}") from None
    return model.eval()

