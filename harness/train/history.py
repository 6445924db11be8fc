"""What one epoch of a fit measured."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured; `val_*` come from the validation split (None on an epoch that
    `train.eval_every` does not score)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    val_macro_f1: float | None
    train_seconds: float
    images: int

    @property
    def evaluated(self) -> bool:
        """Whether this epoch scored the validation split."""
        return self.val_accuracy is not None

    def metrics(self) -> dict[str, float]:
        """The per-epoch metrics as MLflow logs them (the validation ones when scored)."""
        values = {
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "val_balanced_accuracy": self.val_balanced_accuracy,
            "val_macro_f1": self.val_macro_f1,
        }
        return {key: value for key, value in values.items() if value is not None}
