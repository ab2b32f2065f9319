"""The environment variables vitrepro reads, named once (``vitrepro.cli`` reads them; experiment files name
``${VITREPRO_DATA}`` as a placeholder that ``experiments.plan`` fills)."""

DATA_ROOT_ENV = "VITREPRO_DATA"  # the data root of every command, when --data-root is not given
RESULTS_ENV = "VITREPRO_RESULTS"  # the results folder, when --results-dir is not given

__all__ = ["DATA_ROOT_ENV", "RESULTS_ENV"]
