"""The Flower 1.41 internals fl-launch calls. If an upgrade changes them, these fail first."""

import inspect

import flwr
from flwr.proto.runtime_pb2 import AcquireTaskRequest, AcquireTaskResponse
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.constant import TaskType
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import run_clientapp


def test_flower_is_the_pinned_release():
    assert flwr.__version__ == "1.41.0"


def test_the_runtime_api_task_loop_the_warm_host_uses():
    assert TaskType.CLIENT_APP.value == "flwr-clientapp"
    assert set(AcquireTaskRequest.DESCRIPTOR.fields_by_name) >= {"supported_task_types"}
    assert set(AcquireTaskResponse.DESCRIPTOR.fields_by_name) >= {"task", "token"}
    assert callable(RuntimeHttpClient.AcquireTask) and callable(RuntimeHttpClient.from_server_address)
    params = inspect.signature(run_clientapp).parameters
    assert list(params)[:3] == ["runtime_api_address", "token", "insecure"]
    assert "runtime_dependency_install" in params


def test_fedavg_hooks_the_strategy_uses():
    params = inspect.signature(FedAvg.start).parameters
    assert {"grid", "initial_arrays", "num_rounds", "timeout", "evaluate_fn"} <= set(params)
    for method in ("configure_train", "aggregate_train"):
        assert list(inspect.signature(getattr(FedAvg, method)).parameters)[:2] == ["self", "server_round"]
    assert FedAvg(fraction_evaluate=0.0).min_evaluate_nodes == 0


def test_the_supernode_logs_its_node_id_as_the_supervisor_reads_it():
    from pathlib import Path

    import flwr.supernode.start_client_internal as sci

    assert 'log(INFO, "SuperNode ID: %s", node_id)' in Path(sci.__file__).read_text()
