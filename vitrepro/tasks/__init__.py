"""LightningModules: the training protocols of the paper, shared by every model family."""
from .classification import ClassificationTask, OptimConfig, warmup_decay

__all__ = ["ClassificationTask", "OptimConfig", "warmup_decay"]
