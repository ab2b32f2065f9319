"""LightningModules: the training protocols of the paper, shared by every model family.

- ``classification``: supervised pre-training from scratch (Sec. 4.1, App. B.1);
- ``finetune``: transfer with a zero head at a higher resolution (Sec. 3.2, App. B.1.1);
- ``mpp``: masked patch prediction, the self-supervised pre-training (Sec. 4.6, App. B.1.2).
"""
from .classification import ClassificationTask, OptimConfig, SupervisedTask
from .optim import build_optimizer, kernel_param_groups, warmup_decay
from .finetune import CheckpointMismatchError, FinetuneConfig, FinetuneTask, describe_state_dict, load_pretrained
from .mpp import MaskedPatchPredictionTask, MPPConfig, corrupt_patch_embeddings, mpp_loss, mpp_targets

__all__ = ["SupervisedTask", "kernel_param_groups", "build_optimizer", "ClassificationTask", "OptimConfig", "warmup_decay",
           "FinetuneConfig", "FinetuneTask", "load_pretrained", "CheckpointMismatchError", "describe_state_dict",
           "MaskedPatchPredictionTask", "MPPConfig", "corrupt_patch_embeddings", "mpp_loss", "mpp_targets"]
