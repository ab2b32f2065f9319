"""Experiment files (schema, scales, grid expansion) and the runner that executes them."""
from .runner import RunsTable, execute_run, run_experiment
from .spec import EvalConfig, Experiment, ExperimentError, RunSpec, describe_runs, validate_run_config

__all__ = ["Experiment", "ExperimentError", "EvalConfig", "RunSpec", "RunsTable", "describe_runs", "execute_run",
           "run_experiment", "validate_run_config"]
