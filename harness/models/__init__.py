"""Model registry and families; importing this package registers every family's builders."""

from harness.models import cnn, resnet  # noqa: F401  (imported to register their builders)
from harness.models.registry import create_model, model_names, model_params, register_model

__all__ = ["create_model", "model_names", "model_params", "register_model"]
