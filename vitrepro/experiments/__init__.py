"""Experiment files (``experiment.py``: loading, scales, grid cells; ``spec.py``: typed validation), the run
plan built once per command (``plan.py``), the protocols a run executes, and the runner that schedules
runs and writes their records. Attributes are imported on first use: reading an experiment file or its
records does not import torch."""
from .._lazy import lazy_exports

_EXPORTS = {"Experiment": "experiment", "ExperimentError": "experiment", "RunSpec": "experiment",
            "describe_runs": "experiment", "validate_run_config": "spec", "EvalConfig": "config_sections",
            "RunPlan": "plan", "build_plan": "plan",
            "execute_run": "runner", "run_experiment": "runner", "PROTOCOLS": "protocols", "Protocol": "protocols",
            "RunContext": "protocols", "Outcome": "protocols", "register_protocol": "protocols",
            "collect": "records", "read_record": "records", "write_record": "records", "write_table": "records"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
