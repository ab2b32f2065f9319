"""Experiment files (schema, scales, grid expansion), the protocols a run executes, and the runner that
schedules runs and writes their records."""
from .protocols import PROTOCOLS, Outcome, Protocol, RunContext, register_protocol
from .records import collect, read_record, write_record, write_table
from .runner import execute_run, run_experiment
from .spec import EvalConfig, Experiment, ExperimentError, RunSpec, describe_runs, validate_run_config

__all__ = ["Experiment", "ExperimentError", "EvalConfig", "RunSpec", "describe_runs", "execute_run", "run_experiment",
           "validate_run_config", "PROTOCOLS", "Protocol", "RunContext", "Outcome", "register_protocol", "collect",
           "read_record", "write_record", "write_table"]
