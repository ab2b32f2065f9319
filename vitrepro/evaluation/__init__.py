"""Evaluators that work on any model with the uniform API (``forward_features``, ``forward_head``)."""
from .fewshot import (evaluate_fewshot, extract_features, fewshot_lsr_accuracy, lsr_solve,
                      sample_fewshot_indices)

__all__ = ["evaluate_fewshot", "extract_features", "fewshot_lsr_accuracy", "lsr_solve", "sample_fewshot_indices"]
