"""`toolrl.distributed.explicit_job`: the job named by the environment, or the cluster's detection."""

from __future__ import annotations

import pytest

from toolrl.distributed import explicit_job


def test_no_explicit_job_leaves_it_to_the_cluster():
    assert explicit_job({}) is None
    # SLURM's launcher sets only the coordinator: the count and the id come from SLURM itself.
    assert explicit_job({"JAX_COORDINATOR_ADDRESS": "node1:61440"}) is None


def test_the_three_variables_name_the_job():
    environ = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "TOOLRL_NUM_PROCESSES": "2", "TOOLRL_PROCESS_ID": "1"}
    assert explicit_job(environ) == ("127.0.0.1:1234", 2, 1)


@pytest.mark.parametrize("environ, names", [
    ({"TOOLRL_NUM_PROCESSES": "2", "TOOLRL_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS=None"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "TOOLRL_NUM_PROCESSES": "2"}, "TOOLRL_PROCESS_ID=None"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "TOOLRL_NUM_PROCESSES": "2", "TOOLRL_PROCESS_ID": "2"}, "in [0, "),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "TOOLRL_NUM_PROCESSES": "two", "TOOLRL_PROCESS_ID": "0"}, "integers"),
])
def test_an_incomplete_or_wrong_job_is_refused_naming_the_variables(environ, names):
    with pytest.raises(ValueError, match="distributed: ") as err:
        explicit_job(environ)
    assert names in str(err.value)
