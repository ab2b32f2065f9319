"""Evaluators that work on any model with the uniform API (``forward_features``, ``forward_head``)."""
from .fewshot_callback import FewShotCallback
from .fewshot import (evaluate_fewshot, extract_features, fewshot_lsr_accuracy, lsr_solve,
                      sample_fewshot_indices)

__all__ = ["FewShotCallback", "evaluate_fewshot", "extract_features", "fewshot_lsr_accuracy", "lsr_solve", "sample_fewshot_indices"]
