"""The Flower internals fl-launch calls, for each release in its range (1.41, 1.42). If an upgrade changes them,
these fail first. CI runs them on constraints.txt's release and, in a second job, on the other (.ci/run)."""

import dataclasses
import importlib
import inspect
import re
import time
from pathlib import Path

import flwr
import pytest
from flwr.proto.runtime_pb2 import AcquireTaskRequest, AcquireTaskResponse
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.constant import TaskType
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import run_clientapp
from packaging.version import Version

from launcher.flower.release import FLOWER_RANGE, FLOWER_REQUIREMENT, installed_flower

ROOT = Path(__file__).resolve().parents[1]
PINNED = ((1, 41), (1, 42))  # the releases whose shape these tests know
FLOWER = installed_flower().release[:2]
# Flower 1.42 removed the Runtime API's RuntimeTracingMiddleware (from the SuperLink's app and the SuperNode's)
TRACING_LAYER = FLOWER == (1, 41)
TRACING = "flwr.supercore.routers.runtime.tracing.RuntimeTracingMiddleware"


def test_flower_is_a_release_of_the_range_setup_py_states_and_these_tests_pin():
    assert Version(flwr.__version__) in FLOWER_RANGE and FLOWER in PINNED
    assert re.search(r'"flwr\[simulation\]([^"]*)"', (ROOT / "setup.py").read_text()).group(1) == FLOWER_REQUIREMENT
    constrained = re.search(r"^flwr==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE).group(1)
    assert Version(constrained) in FLOWER_RANGE
    # every minor release the range admits has its shape pinned here, no more
    assert [(1, minor) for minor in range(30, 60) if Version(f"1.{minor}.0") in FLOWER_RANGE] == list(PINNED)


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


def test_the_supernode_loop_quick_supernode_rewires():
    """launcher.flower.quick_supernode swaps `time` and `_pull_and_store_message` in this module's namespace."""
    import flwr.supernode.start_client_internal as sci

    loop_source = inspect.getsource(sci.start_client_internal)
    assert "run_id = _pull_and_store_message(" in loop_source
    assert "time.sleep(3)" in loop_source  # the idle sleep a bell answers
    assert "time.sleep(0.5)" in inspect.getsource(sci._push_messages)  # the reply wait, polled faster
    assert sci.time.__name__ == "time"


def test_quick_supernode_installs_its_bells_in_that_namespace(tmp_path):
    import time

    import flwr.supernode.start_client_internal as sci

    from contract.wakeups import wake
    from launcher.flower import quick_supernode

    original_time, original_pull = sci.time, sci._pull_and_store_message
    try:
        quick_supernode.install(tmp_path)
        assert isinstance(sci.time, quick_supernode.WakeupClock)
        start = time.monotonic()
        wake(tmp_path, "supernode")
        sci.time.sleep(3)  # the idle sleep: answered by the ring at once
        assert time.monotonic() - start < 1.0
    finally:
        sci.time, sci._pull_and_store_message = original_time, original_pull


def test_the_task_host_waits_for_the_supernodes_pull_of_a_message(tmp_path):
    """quick_supernode holds the node's pull lock while Flower's pull runs; the task host's wait returns once
    it is done (here Flower's pull is stood in for by one that takes 0.6 s, as a slow link would)."""
    import threading
    import time

    import flwr.supernode.start_client_internal as sci

    from launcher.flower import quick_supernode
    from launcher.flower.pull_lock import PullLock

    original_time, original_pull = sci.time, sci._pull_and_store_message
    finished = []
    sci._pull_and_store_message = lambda *a, **k: (time.sleep(0.6), finished.append(time.monotonic()))[0]
    try:
        quick_supernode.install(tmp_path)
        PullLock(tmp_path).wait_free()  # nobody pulling: at once
        puller = threading.Thread(target=sci._pull_and_store_message)
        puller.start()
        time.sleep(0.1)
        asked = time.monotonic()
        assert PullLock(tmp_path).wait_free(stop=lambda: time.monotonic() - asked > 0.1) is False  # SIGTERM'd
        assert time.monotonic() - asked < 0.3 and not finished
        assert PullLock(tmp_path).wait_free() is True
        returned = time.monotonic()
        puller.join()
        assert finished and 0 <= returned - finished[0] < 0.1
    finally:
        sci.time, sci._pull_and_store_message = original_time, original_pull


def test_a_clientapp_task_is_a_call_of_the_app_object_that_apps_task_log_wraps():
    """launcher.flower.clientapp_calls wraps ClientApp.__call__(self, message, context)."""
    from flwr.clientapp import ClientApp

    assert list(inspect.signature(ClientApp.__call__).parameters) == ["self", "message", "context"]
    import flwr.supernode.runtime.run_clientapp as runner

    assert "client_app(message=message, context=context)" in inspect.getsource(runner)


def test_the_strategy_lines_launcher_flower_strategy_log_reads():
    import flwr.serverapp.strategy.fedavg as fedavg
    import flwr.serverapp.strategy.strategy as base

    source = inspect.getsource(base)
    for line in ('"[ROUND %s/%s]"', '"\\t└──> Aggregated MetricRecord: %s"', '"Global evaluation"',
                 '"\\t└──> MetricRecord: %s"'):
        assert line in source
    assert '"aggregate_train" if is_train else "aggregate_evaluate"' in inspect.getsource(fedavg)


def test_the_json_of_flwr_ls_that_launcher_flower_run_record_reads():
    import flwr.cli.ls as ls

    source = inspect.getsource(ls)
    for key in ('"run-id"', '"status"', '"status-details"', '"runs": runs_list'):
        assert key in source


def test_flowers_config_pair_pattern_is_the_one_launcher_flower_config_args_checks_against():
    from flwr.common.config import parse_config_args

    from launcher.flower.config_args import PAIR

    assert f"pattern = re.compile(r\"{PAIR.pattern}\")" in inspect.getsource(parse_config_args)


def test_the_object_exchange_simulator_exchange_clock_models():
    """Chunk size, pull/push pools, the pull backoff and the objects a message is made of, as Flower 1.41 has
    them: the emulated clock copies these (virtual mode predicts process mode's transfers with them)."""
    import numpy as np
    from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
    from flwr.common import constant
    from flwr.supercore import constant as supercore
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    from simulator import exchange_clock as model
    from simulator.deadline_grid import POLL_SECONDS

    assert constant.FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE == model.CHUNK_BYTES
    assert supercore.FLWR_PRIVATE_MAX_CONCURRENT_OBJ_PULLS == model.CONCURRENT
    assert supercore.FLWR_PRIVATE_MAX_CONCURRENT_OBJ_PUSHES == model.CONCURRENT
    assert (supercore.PULL_INITIAL_BACKOFF, supercore.PULL_BACKOFF_CAP) == (model.INITIAL_BACKOFF, model.BACKOFF_CAP)
    source = inspect.getsource(inflatable_utils.pull_objects)
    assert "delay * (1 + random.uniform(-0.2, 0.2))" in source and "delay = min(delay * 2, backoff_cap)" in source
    assert model.SERVER_POLL == POLL_SECONDS
    # a device's node pulls every NODE_IDLE_PULL s while idle: Flower's own sleep after a pull that brought nothing
    import flwr.supernode.start_client_internal as sci

    assert f"time.sleep({model.NODE_IDLE_PULL:g})" in inspect.getsource(sci.start_client_internal)
    # a reply's objects: sizes within a few bytes of the model's, one per chunk, head, record
    arrays = [np.zeros(n, dtype=np.float32) for n in (61_828, 10, 1)]
    content = RecordDict({"arrays": ArrayRecord({f"a{i}": Array(a) for i, a in enumerate(arrays)}),
                          "metrics": MetricRecord({"num-examples": 10, "train-loss": 0.5})})
    flower = sorted(len(o.deflate()) for o in get_all_nested_objects(content).values())
    ours = sorted(model.message_objects([a.nbytes for a in arrays])[:-1])  # the message itself is not built here
    assert len(flower) == len(ours)
    assert all(abs(f - o) <= 0.1 * o + 40 for f, o in zip(flower, ours)), (flower, ours)



def test_each_http_gate_admits_what_flowers_own_dispatch_acts_on():
    """launcher.flower.http_gates skips a middleware where its dispatch would only ``call_next``."""
    import flwr.superlink.main as superlink_main
    from flwr.supercore.routers.runtime import tracing
    from flwr.superlink.routers.control import middlewares as control
    from flwr.superlink.routers.fleet import middlewares as fleet
    from flwr.superlink.routers.fleet import node_auth

    from launcher.flower.http_gates import CONTROL, FLEET, GATES, qualified_name

    def src(cls):
        return " ".join(inspect.getsource(cls.dispatch).split())

    assert f'return path.startswith("{CONTROL}")' in inspect.getsource(control._is_control_path)
    assert all(path.startswith(CONTROL) for _, path in control.CONTROL_SENSITIVE_ROUTE_KEYS)
    assert "response = await call_next(request) if _is_control_sensitive_route(request):" in src(
        control.ControlSensitiveResponseMiddleware)
    assert ("if not _is_control_path(request.url.path) or _is_control_sensitive_route( request ): "
            "return await call_next(request)") in src(control.ControlEventLogMiddleware)
    assert ("if self._license_plugin is None or not _is_control_path(request.url.path): "
            "return await call_next(request)") in src(control.ControlLicenseMiddleware)
    assert ("if not _is_control_path(request.url.path) or _is_control_auth_route(request): "
            "return await call_next(request)") in src(control.ControlAuthenticationMiddleware)
    assert f'if request.url.path.startswith("{FLEET}") and isinstance(' in src(node_auth.NodeAuthMiddleware)
    fleet_log = src(fleet.FleetEventLogMiddleware)
    assert f'if not request.url.path.startswith("{FLEET}"): return await call_next(request)' in fleet_log
    assert '"fleet_event_log_plugin", None' in fleet_log and "if plugin is None or" in fleet_log
    gated = {control.ControlSensitiveResponseMiddleware, control.ControlEventLogMiddleware,
             control.ControlLicenseMiddleware, control.ControlAuthenticationMiddleware,
             node_auth.NodeAuthMiddleware, fleet.FleetEventLogMiddleware}
    if TRACING_LAYER:
        assert ('response = await call_next(request) if os.getenv("FLWR_TRACING_ENABLED") != "1" '
                "or response.status_code >= 400: return response") in src(tracing.RuntimeTracingMiddleware)
        gated.add(tracing.RuntimeTracingMiddleware)
    else:  # its gate stays for 1.41 and meets nothing here
        assert not hasattr(tracing, "RuntimeTracingMiddleware")
    assert set(GATES) == {qualified_name(cls) for cls in gated} | {TRACING}
    # the SuperLink's layers (nine in 1.41, eight in 1.42): the gated ones, the error translator and the
    # protobuf translation
    layers = [m.cls.__name__ for m in superlink_main._get_middleware()]
    assert sorted(layers) == sorted([c.__name__ for c in gated] + ["BaseHTTPMiddleware",
                                                                   "ProtobufTranslationMiddleware"])


def test_a_gated_superlink_runs_each_layer_only_on_its_paths(monkeypatch):
    """The SuperLink app quick_superlink builds: a Control layer sees a Control request, not a health check;
    the protobuf translation still sees both. Flower's ungated app, for comparison, runs every layer on both."""
    from flwr.supercore.protobuf.translation import ProtobufTranslationMiddleware
    from flwr.superlink.main import create_app
    from flwr.superlink.routers.control.middlewares import ControlAuthenticationMiddleware
    from starlette.testclient import TestClient

    from launcher.flower.http_gates import gated

    seen = []
    watched = [ControlAuthenticationMiddleware, ProtobufTranslationMiddleware]
    if TRACING_LAYER:
        from flwr.supercore.routers.runtime.tracing import RuntimeTracingMiddleware

        watched.append(RuntimeTracingMiddleware)
    for cls in watched:
        original = cls.dispatch

        async def counted(self, request, call_next, _cls=cls, _original=original):
            if type(self) is _cls:
                seen.append((_cls.__name__, request.url.path))
            return await _original(self, request, call_next)

        monkeypatch.setattr(cls, "dispatch", counted)

    def paths(app):
        seen.clear()
        client = TestClient(app)
        assert client.get("/health").status_code == 200
        assert client.post("/v1/control/list-runs", content=b"",
                           headers={"content-type": "application/protobuf"}).status_code == 200
        return sorted(seen)

    assert paths(gated(create_app())) == [
        ("ControlAuthenticationMiddleware", "/v1/control/list-runs"),
        ("ProtobufTranslationMiddleware", "/health"), ("ProtobufTranslationMiddleware", "/v1/control/list-runs")]
    assert len(paths(create_app())) == 2 * len(watched)


@pytest.mark.skipif(not TRACING_LAYER, reason="Flower 1.42's SuperNode has no tracing layer (the next test)")
def test_quick_supernodes_runtime_api_skips_tracing_unless_enabled(monkeypatch):
    """quick_supernode gates the SuperNode app Flower's flower_supernode creates (flwr.supernode.main.create_app)."""
    import flwr.supernode.main as supernode_main
    from flwr.supercore.routers.runtime.tracing import RuntimeTracingMiddleware
    from starlette.testclient import TestClient

    from launcher.flower.quick_http import install

    seen = []
    original = RuntimeTracingMiddleware.dispatch

    async def counted(self, request, call_next):
        seen.append(request.url.path)
        return await original(self, request, call_next)

    monkeypatch.setattr(RuntimeTracingMiddleware, "dispatch", counted)
    monkeypatch.setattr(supernode_main, "create_app", supernode_main.create_app)  # restored after the test
    install("flwr.supernode.main")
    client = TestClient(supernode_main.create_app())
    assert client.get("/health").status_code == 200
    assert seen == []
    monkeypatch.setenv("FLWR_TRACING_ENABLED", "1")
    assert client.get("/health").status_code == 200
    assert seen == ["/health"]


@pytest.mark.skipif(TRACING_LAYER, reason="Flower 1.41's SuperNode has a tracing layer (the test before)")
def test_quick_supernodes_runtime_api_has_no_layer_to_gate_on_flower_1_42(monkeypatch):
    """1.42's SuperNode app: the error translator and the protobuf translation, which run on every request;
    quick_supernode's gating leaves them as they are."""
    import flwr.supernode.main as supernode_main
    from starlette.testclient import TestClient

    from launcher.flower.http_gates import install

    def layers(app):
        return sorted(m.cls.__name__ for m in app.user_middleware)

    assert layers(supernode_main.create_app()) == ["BaseHTTPMiddleware", "ProtobufTranslationMiddleware"]
    monkeypatch.setattr(supernode_main, "create_app", supernode_main.create_app)  # restored after the test
    install("flwr.supernode.main")
    app = supernode_main.create_app()
    assert layers(app) == ["BaseHTTPMiddleware", "ProtobufTranslationMiddleware"]
    assert TestClient(app).get("/health").status_code == 200


def _answers(app, requests) -> list[tuple]:
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        return [(r.status_code, r.headers.get("content-type"), r.content)
                for r in (client.post(path, content=body, headers={"content-type": kind})
                          for path, body, kind in requests)]


def _quick_requests() -> list[tuple[str, bytes, str]]:
    from flwr.proto.fleet_pb2 import PullMessagesRequest, PushMessagesRequest
    from flwr.proto.message_pb2 import PullObjectRequest, PushObjectRequest
    from flwr.proto.runtime_pb2 import PullTaskInputRequest

    pb = "application/protobuf"
    return [("/v1/fleet/pull-messages", PullMessagesRequest().SerializeToString(), pb),  # unsigned: 401
            ("/v1/fleet/push-messages", PushMessagesRequest().SerializeToString(), pb),
            ("/v1/fleet/pull-object", b"\xff\xffgarbage", pb),  # 400 from the protobuf translation
            ("/v1/fleet/push-object", PushObjectRequest().SerializeToString(), "text/plain"),  # 415
            ("/v1/runtime/acquire-task", AcquireTaskRequest().SerializeToString(), pb),  # 200, empty
            ("/v1/runtime/pull-object", PullObjectRequest().SerializeToString(), pb),  # no task token: 401
            ("/v1/runtime/pull-task-input", PullTaskInputRequest().SerializeToString(), pb),
            ("/v1/runtime/no-such-call", b"", pb)]  # not a quick path: 404 from the full stack


def test_quick_routes_answer_every_call_as_flowers_own_stack_does(monkeypatch):
    """launcher.flower.quick_http: the same requests (answered, refused by node or task authentication, a bad
    payload, a bad content type) get the same status, content type and bytes from the quick SuperLink and
    SuperNode apps as from Flower's own; and the quick ones pass no BaseHTTPMiddleware layer."""
    import flwr.superlink.main as superlink_main
    import flwr.supernode.main as supernode_main
    from starlette.middleware.base import BaseHTTPMiddleware

    from launcher.flower.quick_http import quick, quick_paths

    layers = []
    original = BaseHTTPMiddleware.__call__

    async def counted(self, scope, receive, send):
        if scope["type"] == "http":
            layers.append(scope["path"])
        return await original(self, scope, receive, send)

    monkeypatch.setattr(BaseHTTPMiddleware, "__call__", counted)
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supernode.nodestate import NodeStateFactory

    from launcher.flower.quick_http import INLINE_PATHS, THREAD_HANDOFFS, install

    pooled = []  # (path, function) of every hand-off to a worker thread, as quick_http finds it installed
    for name in THREAD_HANDOFFS:
        module = importlib.import_module(name)
        handoff = getattr(module.run_in_threadpool, "pooled", module.run_in_threadpool)

        async def counted_pool(func, *args, _handoff=handoff, **kwargs):
            pooled.append(getattr(func, "__name__", repr(func)))
            return await _handoff(func, *args, **kwargs)

        monkeypatch.setattr(module, "run_in_threadpool", counted_pool)  # Flower's own, restored after the test
    monkeypatch.setattr(superlink_main, "create_app", superlink_main.create_app)
    monkeypatch.setattr(supernode_main, "create_app", supernode_main.create_app)
    install()  # the hand-offs as a quick SuperLink or SuperNode has them

    requests = _quick_requests()
    statuses = []
    for create in (superlink_main.create_app, lambda: supernode_main.create_app(
            state_factory=NodeStateFactory(ObjectStoreFactory()))):
        flowers = _answers(create(), requests)
        statuses += [status for status, _, _ in flowers]
        assert len(layers) >= len(requests)  # Flower's own stack: its layers see every call
        assert pooled  # ... and hands its synchronous calls to worker threads
        layers.clear()
        pooled.clear()
        assert _answers(quick(create()), requests) == flowers
        assert all(path not in quick_paths() for path in layers), layers
        assert "/v1/runtime/no-such-call" in layers
        assert pooled == [], pooled  # the quick calls sent here are all inline ones
        layers.clear()
    assert {path for path, _, _ in requests if path in quick_paths()} <= INLINE_PATHS
    assert INLINE_PATHS <= quick_paths()
    assert 200 in statuses and 401 in statuses and 415 in statuses and 400 in statuses


def test_every_quick_path_is_a_unary_call_of_flowers_apps():
    """quick_http answers with one buffered response: every Fleet and Runtime route it takes returns one
    protobuf message (no stream), in both apps."""
    import typing

    import flwr.superlink.main as superlink_main
    import flwr.supernode.main as supernode_main
    from fastapi.routing import APIRoute

    from launcher.flower.quick_http import quick_paths

    def flat(routes):
        for route in routes:
            inner = getattr(getattr(route, "original_router", None), "routes", None)
            yield from flat(inner) if inner is not None else [route]

    seen = set()
    for app in (superlink_main.create_app(), supernode_main.create_app()):
        for route in flat(app.routes):
            if isinstance(route, APIRoute) and route.path in quick_paths():
                seen.add(route.path)
                returns = typing.get_type_hints(route.endpoint.__wrapped__).get("return")
                assert typing.get_origin(returns) is None and returns.__module__.startswith("flwr.proto"), route.path
    assert {"/v1/fleet/pull-object", "/v1/fleet/push-messages", "/v1/runtime/acquire-task",
            "/v1/runtime/pull-task-input", "/v1/runtime/push-object"} <= seen


def test_the_task_host_answers_flowers_telemetry_events_without_building_them(monkeypatch):
    """run_clientapp and flwr_exit send their events through telemetry.event -> create_event; with telemetry
    neither sent nor logged, warm_clientapp.quiet_telemetry answers "disabled" without platform probes."""
    import platform

    from flwr.supercore import telemetry
    from flwr.supercore.exit import exit as flwr_exit_module
    from flwr.supernode.runtime import run_clientapp as run_clientapp_module

    from launcher.flower.warm_clientapp import quiet_telemetry

    assert run_clientapp_module.event is telemetry.event and flwr_exit_module.event is telemetry.event
    assert "create_event(event_type, event_details)" in inspect.getsource(telemetry.event)
    assert 'if FLWR_TELEMETRY_ENABLED == "1":' in inspect.getsource(telemetry.create_event)

    def probed():
        raise AssertionError("platform.architecture() ran")

    monkeypatch.setattr(platform, "architecture", probed)
    monkeypatch.setattr(telemetry, "create_event", telemetry.create_event)  # restored after the test
    monkeypatch.setattr(telemetry, "FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setattr(telemetry, "FLWR_TELEMETRY_LOGGING", "0")
    quiet_telemetry()
    assert telemetry.event(telemetry.EventType.FLWR_CLIENTAPP_RUN_ENTER).result(timeout=5) == "disabled"


def test_the_task_s_last_push_that_task_output_retries():
    """Flower's run_clientapp pushes the task's output from an exit handler that cuts the retries to one try;
    launcher.flower.task_output replaces that module's push_task_output, built from these names."""
    import flwr.supernode.runtime.run_clientapp as runner

    source = inspect.getsource(runner.run_clientapp)
    assert "retry_invoker.max_tries = 1" in source and "push_task_output(" in source
    params = list(inspect.signature(runner.push_task_output).parameters)
    assert params == ["client", "context", "sub_status", "details"]
    assert runner.PushTaskOutputRequest and runner.context_to_proto


def _http_server_that_drops_the_first_request():
    """A server on 127.0.0.1 that closes its first connection once the request is in, as a keep-alive timeout
    meeting a request does, and answers later ones (an empty protobuf, 200). Returns (port, requests seen)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
                             [0])
                while len(body) < length:
                    body += conn.recv(65536)
                seen.append(head.split(b" ")[1].decode())
                if len(seen) > 1:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/protobuf\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener, seen


def test_the_task_s_last_push_is_tried_again_on_a_fresh_connection():
    """With the retries cut to one try as run_clientapp's exit handler does, a push_task_output whose connection
    the server closes is tried again (a second request, on a new connection, answered); Flower's sends one."""
    from flwr.supercore.retry import make_simple_http_retry_invoker

    from launcher.flower import task_output

    listener, seen = _http_server_that_drops_the_first_request()
    invoker = make_simple_http_retry_invoker()
    invoker.max_tries = 1
    with listener:
        client = RuntimeHttpClient.from_server_address(f"127.0.0.1:{listener.getsockname()[1]}", insecure=True,
                                                       root_certificates=None, interceptors=[], retry_invoker=invoker)
        task_output.push_task_output(client, None, "completed", "")
        client.close()
    assert seen == ["/v1/runtime/push-task-output"] * 2


def test_what_launcher_flower_plain_logs_substitutes():
    import importlib

    from flwr.supercore import logger
    from flwr.supercore.constant import TASK_TYPE_TO_COMMAND
    from flwr.supercore.superexec.executor import subprocess_executor

    from launcher.flower.plain_logs import TASK_COMMANDS

    assert "colored" in inspect.signature(logger.update_console_handler).parameters
    assert isinstance(logger.console_handler, logger.ConsoleHandler)
    superlink = importlib.import_module("flwr.superlink.cli.flower_superlink")
    assert "_get_superexec_command(" in inspect.getsource(superlink)
    assert inspect.getsource(superlink._get_superexec_command).count('["flower-superexec"]') == 1
    source = inspect.getsource(subprocess_executor.SubprocessExecutor.launch)
    assert "subprocess.Popen(" in source and "TASK_TYPE_TO_COMMAND[spec.task_type]" in source
    assert {TASK_TYPE_TO_COMMAND[t] for t in (TaskType.SERVER_APP, TaskType.SIMULATION)} <= TASK_COMMANDS


def test_the_superexec_keeps_nothing_of_the_popen_that_starts_a_serverapp():
    """launcher.flower.forked_tasks returns a stand-in with only ``pid`` and ``args`` for a ServerApp the fork
    server forked: Flower's SubprocessExecutor must neither keep nor use what Popen returns, nor pass it more than
    stdout and stderr. Its launch is run here with a Popen whose result fails on any use."""
    from flwr.supercore.superexec.executor import subprocess_executor
    from flwr.supercore.superexec.executor.types import ExecutionSpec

    calls = []

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the executor used Popen's {name}")

    class Recorder:
        DEVNULL = subprocess_executor.subprocess.DEVNULL

        def Popen(self, args, *rest, **kwargs):  # noqa: N802
            calls.append((list(args), rest, set(kwargs)))
            return Untouchable()

    fields = {f.name for f in dataclasses.fields(ExecutionSpec)}
    kept = subprocess_executor.subprocess
    subprocess_executor.subprocess = Recorder()
    try:
        for quiet in (False, True):
            spec = ExecutionSpec(**{name: value for name, value in dict(
                task_type=TaskType.SERVER_APP, runtime_api_address="127.0.0.1:9091", token="t", insecure=True,
                root_certificates_path=None, parent_pid=1, runtime_dependency_install=False, suppress_output=quiet,
                task_id=1).items() if name in fields})
            result = subprocess_executor.SubprocessExecutor().launch(spec)
            assert not any(isinstance(getattr(result, f.name), Untouchable) for f in dataclasses.fields(result))
    finally:
        subprocess_executor.subprocess = kept
    assert [(args[0], rest, kwargs) for args, rest, kwargs in calls] == [
        ("flwr-serverapp", (), set()), ("flwr-serverapp", (), {"stdout", "stderr"})]


def test_a_serverapp_watches_its_superexec_by_pid_not_as_its_parent():
    """A ServerApp the fork server forked (launcher.flower.forked_tasks) is the supervisor's child: Flower's
    --parent-pid watch must ask whether that PID exists, not whether it is the process's parent. Run here in a
    child process told to watch a third process: alive while the third lives, interrupted once it is gone."""
    import subprocess
    import sys

    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watcher = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from flwr.supercore.app_utils import start_parent_process_monitor\n"
        f"start_parent_process_monitor({watched.pid})\n"
        "try:\n"
        "    for _ in range(600):\n"
        "        time.sleep(0.1)  # the signal reaches the watching thread; the main one acts on it when it wakes\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(3)\n")])
    try:
        time.sleep(1.5)
        assert watcher.poll() is None  # a parent check would have ended it within 0.2 s
        watched.kill()
        watched.wait()
        assert watcher.wait(timeout=10) == 3
    finally:
        for proc in (watched, watcher):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_how_run_clientapp_ends_and_installs_the_app_as_the_task_worker_relies_on():
    """launcher.flower.task_worker replaces two names in run_clientapp's module: ``flwr_exit`` (the task's exit
    handlers in two phases, a force-exit thread, then sys.exit) and ``install_from_fab`` (called per task)."""
    from flwr.supercore.exit import exit as flwr_exit_module
    from flwr.supernode.runtime import run_clientapp as module

    from launcher.flower.task_worker import end_task

    source = " ".join(inspect.getsource(module.run_clientapp).split())
    assert "install_from_fab(fab.content, skip_prompt=True)" in source
    assert source.rstrip().endswith("flwr_exit( code=exit_code, event_type=EventType.FLWR_CLIENTAPP_RUN_LEAVE, )")
    assert "exit_handlers=[on_exit]" in source
    exits = " ".join(inspect.getsource(flwr_exit_module.flwr_exit).split())
    assert exits.index("trigger_exit_handlers(run_before_force_exit=True)") < exits.index(
        "threading.Thread(target=force_exit, daemon=True).start()") < exits.index(
        "trigger_exit_handlers(run_before_force_exit=False)") < exits.index("sys.exit(sys_exit_code)")
    ours, flowers = inspect.signature(end_task), inspect.signature(flwr_exit_module.flwr_exit)
    assert ours.parameters.keys() == flowers.parameters.keys()


def test_the_simulation_runtime_gives_its_ith_registered_node_partition_i():
    """simulator.simulation_nodes reads each virtual node's partition from the ServerApp's InMemoryGrid state."""
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.superlink.federation import NoOpFederationManager
    from flwr.superlink.grid import InMemoryGrid

    from simulator.deadline_grid import DeadlineGrid
    from simulator.sampling import ChosenNodes, NodeDirectory
    from simulator.simulation_nodes import registered_partitions

    # the ServerApp's grid is an InMemoryGrid over the state the runtime registers its nodes in
    loop = inspect.getsource(importlib.import_module("flwr.simulation.run_simulation")._main_loop)
    assert "InMemoryGrid(state_factory=state_factory)" in loop and "state_factory=state_factory," in loop
    assert "_register_nodes(" in inspect.getsource(vce_api.start_vce)
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    mapping = vce_api._register_nodes(num_nodes=60, state_factory=factory)
    stores = vce_api._register_node_info_stores(mapping, run=Run.create_empty(7))
    given = {node: store.retrieve_context(7).node_config["partition-id"] for node, store in stores.items()}
    assert sorted(given.values()) == list(range(60))
    grid = InMemoryGrid(state_factory=factory)
    wrapped = ChosenNodes(DeadlineGrid(grid), [])
    assert registered_partitions(grid) == registered_partitions(wrapped) == given
    directory = NodeDirectory()
    directory.learn(wrapped, list(given), timeout=2)  # no message: a message here would find no node to answer it
    assert directory.partition_of == given
    assert registered_partitions(object()) is None  # another grid (process mode): ask the nodes


def _simulation_state(nodes: int):
    """A simulation runtime's state as flwr-simulation makes it: the nodes, a run, the ServerApp's grid."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.proto.task_pb2 import Task
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.superlink.federation import NoOpFederationManager
    from flwr.superlink.grid import InMemoryGrid

    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    mapping = vce_api._register_nodes(num_nodes=nodes, state_factory=factory)
    state = factory.state()
    run = Run.create_empty(7)
    run.primary_task_id, run.federation_id = 1, NOOP_FEDERATION_ID
    state.run_ids[7] = RunRecord(run=run)
    state.task_store[1] = Task(task_id=1, run_id=7)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, SUPERLINK_NODE_ID
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    return list(mapping), state, grid


def test_the_simulation_runtime_asks_its_state_for_each_nodes_messages_as_the_index_answers():
    """simulator.simulation_nodes.index_messages_by_node answers the runtime's per-node asks as Flower's state."""
    from flwr.app import Message, RecordDict
    from flwr.server.superlink.fleet.vce import vce_api

    from simulator.simulation_nodes import index_messages_by_node

    assert "state.get_message_ins(node_id=node_id, limit=1)" in inspect.getsource(vce_api.add_messages_to_queue)
    answers = []
    for indexed in (False, True):
        nodes, state, grid = _simulation_state(12)
        if indexed:
            assert index_messages_by_node(grid) is index_messages_by_node(grid)  # once, however often asked
        to = nodes[:4] + nodes[:2] + nodes[6:8]  # two messages for nodes 0 and 1
        ids = list(grid.push_messages([Message(RecordDict(), message_type=f"query.m{i}", dst_node_id=n)
                                       for i, n in enumerate(to)]))
        sweeps = [[(nodes.index(n), m.metadata.message_type, m.metadata.message_id in ids)
                   for n in nodes for m in state.get_message_ins(node_id=n, limit=1)] for _ in range(3)]
        assert all(m.metadata.delivered_at for m in state.message_ins_store.values())
        answers.append(sweeps)
    flowers, indexed = answers
    first = [(i, f"query.m{i}", True) for i in (0, 1, 2, 3, 6, 7)]
    assert indexed == flowers == [first, [(0, "query.m4", True), (1, "query.m5", True)], []]


def test_the_runtimes_sweep_over_many_nodes_costs_little_with_the_index():
    """What the index is for: the runtime's sweep (an ask per node) with a batch in flight, timed on Flower's
    own state and then on the indexed one. Flower's checks every stored message per node (measured: 8 s a
    sweep at 3500 nodes under load); the index looks only at the asked node's."""
    from flwr.app import Message, RecordDict

    from simulator.simulation_nodes import index_messages_by_node

    def sweep_seconds(indexed: bool) -> float:
        nodes, state, grid = _simulation_state(500)
        if indexed:
            index_messages_by_node(grid)
        grid.push_messages([Message(RecordDict(), message_type="evaluate", dst_node_id=n) for n in nodes[:50]])
        best = float("inf")
        for _ in range(2):  # the first hands out the 50, the second finds them delivered
            start = time.perf_counter()
            for n in nodes:
                state.get_message_ins(node_id=n, limit=1)
            best = min(best, time.perf_counter() - start)
        return best

    flowers, indexed = sweep_seconds(False), sweep_seconds(True)
    assert indexed * 10 < flowers, (indexed, flowers)  # measured under load: 0.5 s against 0.6 ms


def test_the_superlinks_uvicorn_run_that_fleet_listener_replaces():
    """flower-superlink starts its one HTTP server with ``uvicorn.run(app=..., ...)`` through its module's
    ``uvicorn`` name (launcher.flower.fleet_listener swaps that name for one that binds a second socket)."""
    import uvicorn

    module = importlib.import_module("flwr.superlink.cli.flower_superlink")
    assert module.uvicorn is uvicorn
    source = inspect.getsource(module._run_superlink_http_api)
    assert re.search(r"uvicorn\.run\(\s*app=", source) and "workers=1" in source


def test_a_fleet_listener_serves_only_the_fleet_api_and_node_keys_register(tmp_path):
    """quick_superlink --fleet-host: on that address Fleet calls reach Flower (its node authentication answers),
    Control and Runtime calls are 404; on 127.0.0.1 the Control API answers. With --enable-supernode-auth,
    launcher.flower.register_nodes registers a key once (Flower's `flwr supernode register`), not twice."""
    import os
    import subprocess
    import sys

    import httpx
    from flwr.proto.control_pb2 import ListNodesResponse

    from launcher.devices.direct import make_node_keys
    from launcher.devices.tls import make_run_certificates
    from launcher.processes.entry_modules import QUICK_SUPERLINK, REGISTER_NODES
    from launcher.processes.ports import free_ports, wait_for_port

    tls = make_run_certificates(tmp_path / "tls", hosts=["127.0.0.1", "127.0.0.2"])
    port, fleet_port = free_ports(1)[0], free_ports(1, host="127.0.0.2")[0]
    home = tmp_path / "flwr_home"
    home.mkdir()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = '
                                      f'"127.0.0.1:{port}"\nroot-certificates = "{tls.ca}"\n')
    env = dict(os.environ, FLWR_HOME=str(home), FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
    with open(tmp_path / "superlink.log", "wb") as log:
        link = subprocess.Popen([sys.executable, "-m", QUICK_SUPERLINK, "--ssl-certfile", str(tls.cert),
                                 "--ssl-keyfile", str(tls.key), "--ssl-ca-certfile", str(tls.ca),
                                 "--enable-supernode-auth", "--fleet-host", "127.0.0.2",
                                 "--fleet-port", str(fleet_port), "--host", "127.0.0.1", "--port", str(port),
                                 "--isolation", "process",
                                 "--disable-runtime-dependency-installation"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        assert wait_for_port("127.0.0.2", fleet_port, 60, alive=lambda: link.poll() is None), \
            (tmp_path / "superlink.log").read_text()[-2000:]
        with httpx.Client(verify=str(tls.ca), timeout=10) as client:
            def post(host: str, at: int, path: str) -> int:
                return client.post(f"https://{host}:{at}{path}", content=b"",
                                   headers={"content-type": "application/protobuf"}).status_code

            assert post("127.0.0.2", fleet_port, "/v1/control/list-nodes") == 404
            assert post("127.0.0.2", fleet_port, "/v1/runtime/acquire-task") == 404
            assert post("127.0.0.2", fleet_port, "/v1/fleet/activate-node") == 401  # Flower's node authentication
            assert post("127.0.0.1", port, "/v1/control/list-nodes") == 200
        key = make_node_keys(tmp_path / "nodes", [0], 1)[0]
        public = str(key.with_suffix(".pub"))
        twice = subprocess.run([sys.executable, "-m", REGISTER_NODES, "local", public, public], env=env,
                               capture_output=True, text=True, timeout=120)
        lines = twice.stderr.strip().splitlines()  # the first went through, the second is refused
        assert twice.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"{public}: "), twice.stderr
        assert "already in use" in lines[0], lines
        with httpx.Client(verify=str(tls.ca), timeout=10) as client:  # one node, as the SuperLink lists them
            listed = client.post(f"https://127.0.0.1:{port}/v1/control/list-nodes", content=b"",
                                 headers={"content-type": "application/protobuf"})
        assert len(ListNodesResponse.FromString(listed.content).nodes_info) == 1
    finally:
        link.terminate()
        link.wait(timeout=30)


def test_the_uvicorn_loop_server_tick_replaces_and_its_stop_flag():
    """launcher.flower.server_tick swaps uvicorn.Server.main_loop and makes should_exit a waking property: it relies on
    on_tick(0) refreshing the Date header and answering should_exit, and on every stop setting should_exit."""
    import uvicorn

    source = inspect.getsource(uvicorn.Server.on_tick)
    assert "counter % 10 == 0" in source and "default_headers" in source and "self.should_exit" in source
    assert "self.should_exit = True" in inspect.getsource(uvicorn.Server.handle_exit)
    assert "self.should_exit = False" in inspect.getsource(uvicorn.Server.__init__)
    assert "await self.main_loop()" in inspect.getsource(uvicorn.Server._serve)


def test_a_ticking_server_wakes_once_a_second_and_stops_at_once(monkeypatch):
    """The oracle: on_tick calls counted while a real uvicorn server idles, and the time from should_exit to the end
    of its thread. Stock uvicorn ticks ten times a second."""
    import socket
    import threading
    import urllib.request

    import uvicorn

    from launcher.flower import server_tick

    monkeypatch.setattr(uvicorn.Server, "main_loop", uvicorn.Server.main_loop)
    monkeypatch.setattr(uvicorn.Server, "should_exit", None, raising=False)  # install() puts its flag there
    server_tick.install()
    ticks = []
    on_tick = uvicorn.Server.on_tick

    async def counted(self, counter):
        ticks.append(time.monotonic())
        return await on_tick(self, counter)

    monkeypatch.setattr(uvicorn.Server, "on_tick", counted)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as reply:
        assert reply.read() == b"ok" and reply.headers["date"]
    ticks.clear()
    time.sleep(3.0)
    assert 2 <= len(ticks) <= 4, f"{len(ticks)} ticks in 3 s (stock uvicorn: ~30)"
    asked = time.monotonic()
    server.should_exit = True  # as Flower's SuperNode stops its Runtime API server, from another thread
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - asked < 0.5


def test_a_batch_of_object_calls_is_answered_as_each_call_alone(monkeypatch):
    """launcher.flower.object_batch: a batch of pull-object and push-object calls to a quick app gets, frame by
    frame, the status and bytes Flower's own stack gives each call sent alone (task and node authentication run per
    call: unauthenticated ones are refused inside the batch too); calls that are not object calls of the batch's
    API are not run (404); once a call is refused, the rest are refused unrun; a malformed batch, or one of too many
    calls, is 400."""
    import flwr.superlink.main as superlink_main
    import flwr.supernode.main as supernode_main
    from flwr.proto.message_pb2 import PullObjectRequest, PushObjectRequest
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supernode.nodestate import NodeStateFactory
    from starlette.testclient import TestClient

    from launcher.flower.object_batch import MAX_BATCH_CALLS, join_calls, split_answers
    from launcher.flower.quick_http import install, quick

    monkeypatch.setattr(superlink_main, "create_app", superlink_main.create_app)
    monkeypatch.setattr(supernode_main, "create_app", supernode_main.create_app)
    install()
    pb = "application/protobuf"
    for api, create in (("fleet", superlink_main.create_app), ("runtime", lambda: supernode_main.create_app(
            state_factory=NodeStateFactory(ObjectStoreFactory())))):
        pull = (f"/v1/{api}/pull-object", PullObjectRequest(run_id=1, object_id="ab" * 32).SerializeToString())
        push = (f"/v1/{api}/push-object", PushObjectRequest(object_id="cd" * 32).SerializeToString())
        garbage = (f"/v1/{api}/pull-object", b"\xff\xffgarbage")
        alone = [(status, body) for status, _, body in _answers(create(), [(p, b, pb) for p, b in (garbage, pull)])]
        assert [status for status, _ in alone] == [400, 401]
        other = "runtime" if api == "fleet" else "fleet"
        with TestClient(quick(create())) as client:
            def batch(calls):
                reply = client.post(f"/v1/{api}/fl-launch-batch", headers={"content-type": pb},
                                    content=join_calls(calls))
                return reply.status_code, (split_answers(reply.content) if reply.status_code == 200 else None)

            assert batch([garbage, pull]) == (200, alone)
            assert batch([(f"/v1/{api}/pull-messages", b""), (f"/v1/{other}/pull-object", pull[1])]) == \
                (200, [(404, b""), (404, b"")])
            assert batch([pull, push, garbage]) == (200, [alone[1], (401, b""), (401, b"")])
            assert batch([pull] * MAX_BATCH_CALLS)[0] == 200
            assert batch([pull] * (MAX_BATCH_CALLS + 1)) == (400, None)
            assert client.post(f"/v1/{api}/fl-launch-batch", headers={"content-type": pb},
                               content=join_calls([pull])[:-3]).status_code == 400


def test_an_unauthenticated_batch_runs_one_call_not_all(monkeypatch):
    """A batch's headers are every call's: once node authentication refuses one, the others are not run. The oracle
    counts Flower's own authenticate_node calls."""
    import flwr.superlink.main as superlink_main
    import flwr.superlink.routers.fleet.node_auth as node_auth
    from flwr.proto.message_pb2 import PullObjectRequest
    from starlette.testclient import TestClient

    from launcher.flower.object_batch import MAX_BATCH_CALLS, join_calls, split_answers
    from launcher.flower.quick_http import install, quick

    monkeypatch.setattr(superlink_main, "create_app", superlink_main.create_app)
    install()
    checked = []
    authenticate = node_auth.authenticate_node

    def counted(request):
        checked.append(request.url.path)
        return authenticate(request)

    monkeypatch.setattr(node_auth, "authenticate_node", counted)
    pull = ("/v1/fleet/pull-object", PullObjectRequest(run_id=1, object_id="ab" * 32).SerializeToString())
    with TestClient(quick(superlink_main.create_app())) as client:
        reply = client.post("/v1/fleet/fl-launch-batch", headers={"content-type": "application/protobuf"},
                            content=join_calls([pull] * MAX_BATCH_CALLS))
    assert reply.status_code == 200
    assert [status for status, _ in split_answers(reply.content)] == [401] * MAX_BATCH_CALLS
    assert checked == ["/v1/fleet/pull-object"]


def test_a_chain_of_fleet_calls_is_answered_as_each_call_alone(monkeypatch):
    """launcher.flower.fleet_chain's path on a quick SuperLink app: each call gets the status and bytes Flower's own
    stack gives it alone (node authentication per call: unauthenticated calls are refused, and the rest with them,
    unrun); calls that are not chainable are not run (404); a malformed chain is 400."""
    import flwr.superlink.main as superlink_main
    from flwr.proto.fleet_pb2 import PullMessagesRequest
    from starlette.testclient import TestClient

    from launcher.flower.fleet_chain import CHAIN_PATH, CONFIRM, PULL_MESSAGES
    from launcher.flower.object_batch import join_calls, split_answers
    from launcher.flower.quick_http import install, quick

    monkeypatch.setattr(superlink_main, "create_app", superlink_main.create_app)
    install()
    pb = "application/protobuf"
    pull = (PULL_MESSAGES, PullMessagesRequest().SerializeToString())
    alone = [(status, body) for status, _, body in _answers(superlink_main.create_app(), [(*pull, pb)])]
    assert [status for status, _ in alone] == [401]
    with TestClient(quick(superlink_main.create_app())) as client:
        def chain(calls):
            reply = client.post(CHAIN_PATH, headers={"content-type": pb}, content=join_calls(calls))
            return reply.status_code, (split_answers(reply.content) if reply.status_code == 200 else None)

        assert chain([pull, (CONFIRM, b"")]) == (200, [alone[0], (401, b"")])
        assert chain([("/v1/fleet/get-run", b""), ("/v1/runtime/pull-messages", b""), pull]) == \
            (200, [(404, b""), (404, b""), alone[0]])
        assert client.post(CHAIN_PATH, headers={"content-type": pb}, content=join_calls([pull])[:-1]).status_code \
            == 400


def test_what_object_batch_replaces_in_a_task_process():
    """launcher.flower.object_batch.install_in_task_process swaps these names: run_clientapp builds its object
    functions with the two makers from a RuntimeHttpClient's bound methods and pushes with push_objects;
    pull_and_inflate_object_from_tree pulls through its module's pull_objects; ProtobufClient sends through
    _client, _base_url and _send."""
    import flwr.supercore.inflatable.inflatable_utils as objects
    import flwr.supernode.runtime.run_clientapp as task
    from flwr.supercore.protobuf.client import ProtobufClient, ProtobufRequestContext

    source = inspect.getsource(task)
    assert "make_pull_object_fn_protobuf(client.PullObject" in source.replace("\n", "").replace(" ", "")
    assert "make_push_object_fn_protobuf(client.PushObject" in source.replace("\n", "").replace(" ", "")
    assert "push_objects(" in inspect.getsource(task.push_message)
    assert "pull_objects(" in inspect.getsource(objects.pull_and_inflate_object_from_tree)
    assert {"_client", "_base_url"} <= set(inspect.getsource(ProtobufClient.__init__).replace("self.", " ").split())
    assert "_send" in dir(ProtobufClient)
    assert {"rpc_method", "message", "request"} <= set(ProtobufRequestContext.__dataclass_fields__)
    assert 'path="/v1/runtime/pull-object"' in inspect.getsource(RuntimeHttpClient.PullObject)


def test_what_object_batch_replaces_in_a_supernode_and_a_serverapp():
    """launcher.flower.object_batch.install_in_supernode reads Flower's pull lambda (pull_object, run_id) and push
    partial (push_object, run_id, session_id), whose connection functions close over the fleet client and node;
    install_in_serverapp swaps the HTTP grid's makers, push_objects and pull_objects."""
    import flwr.superlink.grid.http_grid as grid
    import flwr.supernode.fleet_http_connection as connection
    import flwr.supernode.start_client_internal as loop

    flat = inspect.getsource(loop).replace("\n", "").replace(" ", "")
    assert "pull_objects(obj_ids_to_pull,pull_object_fn=lambdaobj_id:pull_object(run_id,obj_id)," in flat
    assert "push_object_contents_from_iterable(yield_object_contents(object_tree,ids_obj_to_send)," in flat
    assert "push_object_fn=partial(push_object,run_id,session_id)," in flat
    inner = {c.co_name: c for c in connection.http_request_response.__wrapped__.__code__.co_consts
             if inspect.iscode(c)}
    for name in ("pull_object", "push_object"):
        assert {"client", "node"} <= set(inner[name].co_freevars), inner[name].co_freevars
    grid_flat = inspect.getsource(grid).replace("\n", "").replace(" ", "")
    assert "pull_objects(object_ids=" in grid_flat and "pull_object_fn=make_pull_object_fn_protobuf(" in grid_flat
    assert "pull_object_protobuf=self._runtime_client.PullObject" in grid_flat
    assert "push_objects(all_objects,push_object_fn=make_push_object_fn_protobuf(" in grid_flat
    assert "push_object_protobuf=self._runtime_client.PushObject" in grid_flat


def test_what_fleet_chain_replaces_in_a_supernode_and_relies_on_in_the_superlink():
    """launcher.flower.fleet_chain swaps the loop's _pull_and_store_message (called with keywords: receive,
    pull_object, confirm_message_received), _push_messages (object_store, send, push_object) and pull_objects; its
    receive and send make the requests Flower's connection makes; the SuperLink's confirm-message-received only
    deletes the message's objects (so it may come later), and its push-object stores under the request's session."""
    import flwr.superlink.servicer.fleet.fleet_handlers as handlers
    import flwr.supernode.fleet_http_connection as connection
    import flwr.supernode.start_client_internal as loop

    def flat(thing) -> str:
        return inspect.getsource(thing).replace("\n", "").replace(" ", "")

    main = flat(loop.start_client_internal)
    assert "run_id=_pull_and_store_message(state=state," in main
    for keyword in ("receive=receive,", "pull_object=pull_object,",
                    "confirm_message_received=confirm_message_received,"):
        assert keyword in main.split("_pull_and_store_message(", 1)[1].split(")", 1)[0], keyword
    assert "_push_messages(state=state,object_store=store,send=send,push_object=push_object,)" in main
    pull = flat(loop._pull_and_store_message)
    assert "if(recv:=receive())isNone:returnNone" in pull and "message,object_tree=recv" in pull
    assert "obj_contents=pull_objects(obj_ids_to_pull," in pull
    assert "confirm_message_received(run_id,message.metadata.message_id)" in pull
    push = flat(loop._push_messages)
    assert "ids_obj_to_send,session_id=send(message,object_tree,clientapp_runtime)" in push
    assert "yield_object_contents(object_tree,ids_obj_to_send)" in push
    link = flat(connection.http_request_response)
    assert "client.PullMessages,PullMessagesRequest(node=node)" in link
    assert "message_from_proto(response.messages_list[0]),response.message_object_trees[0]," in link
    assert "message=remove_content_from_message(message)" in link
    assert ("PushMessagesRequest(node=node,messages_list=[message_to_proto(message)],"
            "message_object_trees=[object_tree],clientapp_runtime_list=[clientapp_runtime],)") in link
    assert "returnset(response.objects_to_push),response.session_id" in link
    confirm = flat(handlers.confirm_message_received)
    assert "store.delete(request.message_object_id)" in confirm and confirm.count("state.") == 0
    assert "request.session_id," in flat(handlers.push_object)
    # PUSH_AGAIN: a chained push-messages answered one of these goes to Flower's send; any other status raises
    # httpx.HTTPStatusError as Flower's call does once its retry invoker gives up (it retries only these three),
    # and the loop's push catches it as its own (logs the failure, drops the reply)
    from flwr.supercore.retry import http_retry

    from launcher.flower.fleet_chain import PUSH_AGAIN

    assert set(http_retry._RETRYABLE_STATUS_CODES) == {502, 503, 504} <= PUSH_AGAIN
    giveup = flat(http_retry.make_simple_http_retry_invoker)
    assert "ifisinstance(exc,httpx.HTTPStatusError):" in giveup
    assert "returnstatus_codenotin_RETRYABLE_STATUS_CODES" in giveup
    assert "exceptExceptionaserr:" in push.split("send(message,object_tree,clientapp_runtime)", 1)[1]


def test_what_node_tasks_replaces_in_run_clientapp_and_its_runtime_client():
    """launcher.flower.node_tasks runs run_clientapp on a SuperNode's thread: it replaces the module's
    ``RuntimeHttpClient`` (made with from_server_address; its httpx client is ``_client``), its
    ``register_signal_handlers`` (called with the task's exit handlers as a keyword) and its ``flwr_exit``; it routes
    the task's records of Flower's logger."""
    from flwr.supercore.exit import signal_handler
    from flwr.supercore.logger import FLOWER_LOGGER, console_handler
    from flwr.supercore.protobuf.client import ProtobufClient
    from flwr.supernode.runtime import run_clientapp as module

    from launcher.flower.node_tasks import NodeTasks

    source = " ".join(inspect.getsource(module.run_clientapp).split())
    assert "client = RuntimeHttpClient.from_server_address(" in source
    assert "register_signal_handlers( event_type=EventType.FLWR_CLIENTAPP_RUN_LEAVE, exit_message=\"Task stopped.\", " \
           "exit_handlers=[on_exit], )" in source
    ours, flowers = inspect.signature(NodeTasks._register), inspect.signature(signal_handler.register_signal_handlers)
    assert list(ours.parameters)[1:] == list(flowers.parameters)
    ours, flowers = inspect.signature(NodeTasks._end), inspect.signature(module.flwr_exit)
    assert list(ours.parameters)[1:] == list(flowers.parameters)
    assert "self._client = httpx.Client(" in inspect.getsource(ProtobufClient.__init__)
    assert console_handler in FLOWER_LOGGER.handlers


def test_a_task_in_the_node_reaches_flowers_runtime_api_app_as_over_http(monkeypatch):
    """The in-process transport against Flower's own SuperNode app: the same calls give the same answers as over
    a real HTTP connection to the same app served by uvicorn (an unknown token refused alike, a task acquired and
    its input pulled alike)."""
    import socket
    import threading
    import time

    import uvicorn
    from flwr.proto.runtime_pb2 import AcquireTaskRequest, PullTaskInputRequest  # pylint: disable=E0611
    from flwr.supercore.constant import TaskType
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.main import create_app
    from flwr.supernode.nodestate import NodeStateFactory

    from launcher.flower.in_node_runtime import InNodeRuntimeClient, InNodeTransport
    from launcher.flower.quick_http import quick

    app = quick(create_app(state_factory=NodeStateFactory(ObjectStoreFactory())))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    monkeypatch.setattr(InNodeRuntimeClient, "transport", InNodeTransport(app))
    try:
        def client(cls, token=None):
            interceptors = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
            if token:
                interceptors.append(RuntimeTokenHttpInterceptor(token))
            return cls.from_server_address(server_address=f"127.0.0.1:{port}", insecure=True, root_certificates=None,
                                           interceptors=interceptors)

        answers = {}
        for cls in (RuntimeHttpClient, InNodeRuntimeClient):
            plain = client(cls)
            acquired = plain.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value]))
            try:
                client(cls, token="not-a-token").PullTaskInput(PullTaskInputRequest())
                refused = None
            except Exception as err:  # noqa: BLE001 - what each transport raises is the comparison
                refused = (type(err).__name__, getattr(getattr(err, "response", None), "status_code", None))
            answers[cls.__name__] = (acquired.SerializeToString(deterministic=True), refused)
        assert answers["RuntimeHttpClient"] == answers["InNodeRuntimeClient"], answers
        assert answers["RuntimeHttpClient"][1] is not None  # a refusal, seen both ways
    finally:
        server.should_exit = True
        thread.join(10)


def _node_state_with_a_task(run_id: int = 11, node_id: int = 7):
    """A SuperNode's state as Flower's loop leaves it once it pulled a message (start_client_internal's
    _pull_and_store_message): the run, its FAB and context, the message (its objects in the object store), a task."""
    import hashlib

    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.app.message import remove_content_from_message
    from flwr.supercore.fab import Fab
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supernode.nodestate import NodeStateFactory

    factory = NodeStateFactory(ObjectStoreFactory())
    state = factory.state()
    state.set_node_id(node_id)
    run = Run.create_empty(run_id)
    run.fab_hash, run.series_id = hashlib.sha256(b"a fab").hexdigest(), 3
    state.store_run(run)
    state.store_fab(Fab(run.fab_hash, b"a fab", {}))
    state.set_run_series_context(3, Context(run_id=run_id, node_id=node_id, node_config={"partition-id": 0},
                                            state=RecordDict(), run_config={"lr": 0.1}, series_id=3))
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 1, 99  # a message as the server made it
    message = Message(RecordDict({"arrays": ArrayRecord([np.arange(6, dtype=np.float32)]),
                                  "config": ConfigRecord({"round": 1})}), dst_node_id=node_id, message_type="train",
                      group_id="1")
    message.metadata.__dict__["_message_id"] = message.object_id
    state.object_store.preregister(run_id, get_object_tree(message))
    for object_id, obj in get_all_nested_objects(message).items():
        state.object_store.put(object_id, obj.deflate())
    state.store_message(remove_content_from_message(message))
    state.create_task(task_type=TaskType.CLIENT_APP, run_id=run_id, fab_hash=run.fab_hash)
    return factory, state


def _a_tasks_round(cls, address: str) -> dict:
    """The Runtime API calls of a task's round, made by Flower's own run_clientapp functions through a client of
    ``cls``: a task acquired, its input and message pulled, a reply and the node's context pushed."""
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
    from flwr.supernode.runtime import run_clientapp as module

    def client(token=None):
        interceptors = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
        interceptors += [RuntimeTokenHttpInterceptor(token)] if token else []
        return cls.from_server_address(server_address=address, insecure=True, root_certificates=None,
                                       interceptors=interceptors)

    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest  # pylint: disable=E0611

    acquired = client().AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value]))
    task_client = client(acquired.token)
    message, context, run, fab = module.pull_task_input(task_client)
    beat = task_client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
    reply = Message(RecordDict({"arrays": ArrayRecord([np.ones(3, dtype=np.float32)])}), reply_to=message)
    context.state["seen"] = ConfigRecord({"round": 1})
    module.push_message(task_client, reply, context)
    module.push_task_output(task_client, context, "completed", "")
    return {"pulled": ([a.tolist() for a in message.content["arrays"].to_numpy_ndarrays()],
                       dict(message.content["config"]), message.metadata.message_type, run.run_id, fab.content),
            "heartbeat": beat.success}


def _what_the_round_left(state, run_id: int = 11) -> dict:
    """The reply the state holds (its type, whether it answers the state's message, its objects below the message
    object, which carries creation times), the task's status, the node's context."""
    (reply,) = state.get_messages_legacy(run_ids=[run_id], is_reply=True)
    tree = state.object_store.get_object_tree(reply.metadata.message_id)
    (task,) = state.get_tasks()
    objects = [state.object_store.get(child.object_id) for child in tree.children]
    return {"reply": (reply.metadata.message_type, objects),
            "task": (task.status.status, task.status.sub_status),
            "context": repr(state.get_run_series_context(3))}


def test_a_tasks_round_in_the_node_takes_flowers_handlers_and_leaves_what_the_http_api_leaves(monkeypatch):
    """launcher.flower.in_node_runtime: a task's round of calls (Flower's run_clientapp functions) against one node
    state served by Flower's own SuperNode app over a real HTTP connection, against another served by the quick app
    (launcher.flower.direct_routes), and against a third through InNodeRuntimeClient: the same message, input and
    FAB pulled, the same reply objects, task status and context left; the quick app answered the task's calls by
    Flower's endpoints directly; the in-process round reached Flower's app not once (Flower's handlers, called as
    its routes call them), while a token naming no task still goes through the app and is refused as over HTTP."""
    import socket
    import threading

    import uvicorn
    from flwr.proto.runtime_pb2 import PullTaskInputRequest  # pylint: disable=E0611
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor
    from flwr.supernode.main import create_app

    from launcher.flower import direct_routes
    from launcher.flower.in_node_runtime import DIRECT, InNodeRuntimeClient, InNodeTransport
    from launcher.flower.quick_http import quick

    def served_round(make_app) -> tuple[dict, dict]:
        """The round over a real HTTP connection to ``make_app(state_factory)`` served by uvicorn, and what it left."""
        factory, state = _node_state_with_a_task()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(make_app(factory), host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            return _a_tasks_round(RuntimeHttpClient, f"127.0.0.1:{port}"), _what_the_round_left(state)
        finally:
            server.should_exit = True
            thread.join(10)

    over_http, left = served_round(lambda factory: create_app(state_factory=factory))  # Flower's own app: the oracle
    direct = []
    answer = direct_routes.DirectRoute.__call__

    async def counted_direct(self, scope, receive, send):
        direct.append(scope["path"].rsplit("/", 1)[1])
        await answer(self, scope, receive, send)

    monkeypatch.setattr(direct_routes.DirectRoute, "__call__", counted_direct)
    assert served_round(lambda factory: quick(create_app(state_factory=factory))) == (over_http, left)  # direct_routes
    assert {"pull-task-input", "send-task-heartbeat", "pull-messages", "pull-object", "confirm-message-received",
            "push-messages", "push-object"} <= set(direct), direct

    in_factory, in_state = _node_state_with_a_task()
    in_app = quick(create_app(state_factory=in_factory))
    reached = []

    async def counted(scope, receive, send):
        reached.append(scope["path"])
        await in_app(scope, receive, send)

    counted.state, counted.router = in_app.state, in_app.router  # (what direct_routes reads of an app)
    counted.dependency_overrides = in_app.dependency_overrides
    previous = InNodeRuntimeClient.transport
    InNodeRuntimeClient.transport = InNodeTransport(counted)
    try:
        in_node = _a_tasks_round(InNodeRuntimeClient, "127.0.0.1:1")
        assert reached == []  # every call of the round answered by Flower's handlers
        refused = InNodeRuntimeClient.from_server_address(
            server_address="127.0.0.1:1", insecure=True, root_certificates=None,
            interceptors=[RuntimeTokenHttpInterceptor("names-no-task")])
        with pytest.raises(Exception) as refusal:
            refused.PullTaskInput(PullTaskInputRequest())
        assert reached and reached[-1] == "/v1/runtime/pull-task-input"  # through Flower's app, its token check
        assert getattr(getattr(refusal.value, "response", None), "status_code", 0) >= 400
    finally:
        InNodeRuntimeClient.transport = previous
    assert in_node == over_http
    assert over_http["pulled"][0] == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]
    assert _what_the_round_left(in_state) == left
    assert left["task"] == ("finished", "completed") and "'seen'" in left["context"]
    # Flower's routes at these paths call these handlers with (request, state[, task]) (the router's own source)
    source = " ".join(inspect.getsource(importlib.import_module("flwr.supercore.routers.runtime.router")).split())
    for path in DIRECT:
        name = path.rsplit("/", 1)[1]
        assert f'@router.post("/{name}")' in source, path
    for call in ("handlers.acquire_task(request, state)", "core_runtime_handlers.send_task_heartbeat(request, state, "
                 "task)", "handlers.pull_task_input(request, state, task)", "handlers.push_task_output(request, state, "
                 "task)", "handlers.push_object(request, state, task)", "handlers.pull_object(request, state, task)",
                 "handlers.confirm_message_received(request, state, task)", "handlers.push_messages(request, state, "
                 "task)", "handlers.pull_messages(request, state, task)"):
        assert f"return {call}" in source, call


_PREBUILT_PROBE = """
import json, sys
import flwr.supernode.main as supernode_main
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supernode.nodestate import NodeStateFactory
from launcher.flower import quick_supernode

flowers = supernode_main.create_app  # Flower's own, before anything of fl-launch is installed
factory = NodeStateFactory(ObjectStoreFactory())
fresh = flowers(state_factory=factory, superexec_auth_secret=None)
quick_supernode.prebuild_runtime_app()  # what the fork server runs before it forks any SuperNode
quick_supernode.tune_flower()  # what each forked SuperNode then runs: no-ops
made = supernode_main.create_app(state_factory=factory, superexec_auth_secret=None)
again = supernode_main.create_app(state_factory=factory, superexec_auth_secret=None)
import asyncio, httpx
async def answer(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
        r = await client.post("/v1/runtime/acquire-task", content=b"", headers={"content-type": "application/protobuf"})
        return [r.status_code, r.content.hex()]
print(json.dumps({
    "state_same": made.state._state == fresh.state._state,
    "state_keys": sorted(made.state._state),
    "built_before_first_call": made.middleware_stack is not None,
    "second_call_builds_anew": again is not made and again.middleware_stack is None,
    "answers": [asyncio.run(answer(fresh)), asyncio.run(answer(made))],
}))
"""


def test_the_supernode_app_the_fork_server_prebuilds_is_flowers_app_given_the_nodes_state():
    """launcher.flower.quick_supernode.prebuild_runtime_app builds Flower's SuperNode app once in the fork server
    and sets, in each forked node, the state Flower's create_app sets from its arguments. Flower's own create_app,
    called with the same arguments, is the oracle: the same state, the same answer to a Runtime API call. In a
    fresh interpreter (it installs fl-launch's SuperNode changes for good)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", _PREBUILT_PROBE], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["state_same"], seen["state_keys"]
    assert "runtime_state_factory" in seen["state_keys"] and "superexec_auth_secret" in seen["state_keys"]
    assert seen["built_before_first_call"] and seen["second_call_builds_anew"]
    assert seen["answers"][0] == seen["answers"][1], seen["answers"]
    assert seen["answers"][0][0] == 200, seen["answers"]


def test_the_names_node_signatures_replaces_in_flowers_node_authentication():
    """authenticate_node parses the key and verifies through its module's names; the SuperNode's interceptor takes
    the time and signs through its module's names (launcher.flower.node_signatures replaces those names)."""
    import flwr.superlink.routers.fleet.node_auth as node_auth
    import flwr.supernode.node_auth_http_interceptor as interceptor

    used = set(node_auth.authenticate_node.__code__.co_names)
    assert {"bytes_to_public_key", "verify_signature", "now"} <= used
    assert {"now", "sign_message"} <= set(interceptor.NodeAuthHttpInterceptor.intercept.__code__.co_names)


def _signed_headers(interceptor_module, private_key, public_key) -> dict:
    import httpx
    from flwr.supercore.protobuf.client import ProtobufRequestContext

    request = httpx.Request("POST", "http://link/v1/fleet/register-node")
    context = ProtobufRequestContext(rpc_method="RegisterNode", message=None, request=request)
    interceptor_module.NodeAuthHttpInterceptor(private_key, public_key).intercept(context, lambda ctx: None)
    return dict(request.headers)


def test_a_signed_timestamp_is_signed_once_and_verified_once_and_anything_else_as_flower_does(monkeypatch):
    """The oracle is Flower's own authenticate_node and crypto, counted: a SuperNode's calls within REUSE_SECONDS
    carry one timestamp signed once, and the SuperLink verifies that triple once; a changed signature, or the same
    triple once the timestamp is older than Flower's tolerance, is refused as Flower refuses it."""
    import datetime

    import flwr.superlink.routers.fleet.node_auth as node_auth
    import flwr.supernode.node_auth_http_interceptor as interceptor
    from fastapi import HTTPException
    from flwr.proto.fleet_pb2 import RegisterNodeFleetRequest  # pylint: disable=E0611
    from flwr.supercore.constant import FLEET_HTTP_SIGNATURE_HEADER
    from flwr.supercore.primitives.asymmetric import generate_key_pairs, public_key_to_bytes
    from starlette.requests import Request

    from launcher.flower import node_signatures

    for module, names in ((node_auth, ("verify_signature", "bytes_to_public_key", "now")),
                          (interceptor, ("sign_message", "now"))):
        for name in names:
            monkeypatch.setattr(module, name, getattr(module, name))  # put back after the test
    calls = {"sign": 0, "verify": 0}
    sign, verify = interceptor.sign_message, node_auth.verify_signature

    def counted_sign(*args):
        calls["sign"] += 1
        return sign(*args)

    def counted_verify(*args):
        calls["verify"] += 1
        return verify(*args)

    monkeypatch.setattr(interceptor, "sign_message", counted_sign)
    monkeypatch.setattr(node_auth, "verify_signature", counted_verify)
    node_signatures.sign_once_in_supernode()
    node_signatures.verify_once_in_superlink()
    private_key, public_key = generate_key_pairs()
    key_bytes = public_key_to_bytes(public_key)

    def authenticate(headers) -> int:
        scope = {"type": "http", "method": "POST", "path": "/v1/fleet/register-node", "query_string": b"",
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        request = Request(scope)
        request.state.protobuf_request = RegisterNodeFleetRequest(public_key=key_bytes)
        try:
            node_auth.authenticate_node(request)
            return 200
        except HTTPException as err:
            return err.status_code

    sent = [_signed_headers(interceptor, private_key, public_key) for _ in range(5)]
    assert len({h["flwr-timestamp"] for h in sent}) == 1 and calls["sign"] == 1
    assert [authenticate(h) for h in sent] == [200] * 5 and calls["verify"] == 1
    forged = dict(sent[0])
    signature = bytearray(forged[FLEET_HTTP_SIGNATURE_HEADER].encode())
    signature[-6] = ord("A") if signature[-6] != ord("A") else ord("B")
    forged[FLEET_HTTP_SIGNATURE_HEADER] = signature.decode()
    assert authenticate(forged) == 401
    later = node_auth.now() + datetime.timedelta(seconds=400)
    monkeypatch.setattr(node_auth, "now", lambda: later)
    assert authenticate(sent[0]) == 401  # Flower's age check, before any signature
    monkeypatch.setattr(node_signatures.time, "monotonic",
                        lambda: __import__("time").perf_counter() + node_signatures.REUSE_SECONDS + 1000)
    fresh = _signed_headers(interceptor, private_key, public_key)
    assert calls["sign"] == 2
    assert fresh["flwr-timestamp"] != sent[0]["flwr-timestamp"]


def test_a_rounds_fleet_calls_take_flowers_endpoints_directly_and_answer_as_its_stack(monkeypatch):
    """launcher.flower.direct_routes: a node registered, activated and signed in to Flower's own SuperLink app and
    to the quick one (each with its own LinkState through Flower's lifespan) makes the same Fleet calls of a round
    (heartbeat, pull messages; an object pulled and pushed, a confirmation and an empty push for a run that is not
    there, which Flower's handlers fail; a pull in another node's name, refused by its authentication); the answers
    (status, content type, bytes) are the same both ways, and in the quick app every call past the authentication
    was answered by Flower's endpoint called directly, none by FastAPI's router."""
    import flwr.superlink.main as superlink_main
    import flwr.supernode.node_auth_http_interceptor as interceptor
    from flwr.proto.fleet_pb2 import (  # pylint: disable=E0611
        ActivateNodeRequest,
        PullMessagesRequest,
        PushMessagesRequest,
        RegisterNodeFleetRequest,
        RegisterNodeFleetResponse,
    )
    from flwr.proto.heartbeat_pb2 import SendNodeHeartbeatRequest  # pylint: disable=E0611
    from flwr.proto.message_pb2 import (  # pylint: disable=E0611
        ConfirmMessageReceivedRequest,
        PullObjectRequest,
        PushObjectRequest,
    )
    from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
    from flwr.supercore.primitives.asymmetric import generate_key_pairs, public_key_to_bytes
    from starlette.testclient import TestClient

    from launcher.flower import direct_routes
    from launcher.flower.quick_http import quick

    direct = []
    original = direct_routes.DirectRoute.__call__

    async def counted(self, scope, receive, send):
        direct.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(direct_routes.DirectRoute, "__call__", counted)
    monkeypatch.setattr(superlink_main, "create_app", superlink_main.create_app)
    private_key, public_key = generate_key_pairs()
    key = public_key_to_bytes(public_key)
    pb = {"content-type": "application/protobuf"}

    def a_round(app) -> list[tuple]:
        with TestClient(app) as client:
            def post(path, message):
                headers = dict(pb, **_signed_headers(interceptor, private_key, public_key))
                return client.post(path, content=message.SerializeToString(), headers=headers)

            registered = post("/v1/fleet/register-node", RegisterNodeFleetRequest(public_key=key))
            post("/v1/fleet/activate-node", ActivateNodeRequest(public_key=key, heartbeat_interval=30))
            node = Node(node_id=RegisterNodeFleetResponse.FromString(registered.content).node_id)
            calls = [("/v1/fleet/send-node-heartbeat", SendNodeHeartbeatRequest(node=node, heartbeat_interval=30)),
                     ("/v1/fleet/pull-messages", PullMessagesRequest(node=node)),
                     ("/v1/fleet/pull-object", PullObjectRequest(node=node, run_id=5, object_id="ab" * 32)),
                     ("/v1/fleet/push-object", PushObjectRequest(node=node, run_id=5, object_id="ab" * 32,
                                                                object_content=b"x")),
                     ("/v1/fleet/confirm-message-received",
                      ConfirmMessageReceivedRequest(node=node, run_id=5, message_object_id="ab" * 32)),
                     ("/v1/fleet/push-messages", PushMessagesRequest(node=node)),
                     ("/v1/fleet/pull-messages", PullMessagesRequest(node=Node(node_id=node.node_id + 1)))]
            answers = [(registered.status_code,)]
            for path, message in calls:
                response = post(path, message)
                answers.append((path, response.status_code, response.headers.get("content-type"), response.content))
            return answers

    flowers = a_round(superlink_main.create_app())
    assert direct == []
    ours = a_round(quick(superlink_main.create_app()))
    assert ours == flowers
    assert flowers[0] == (200,) and [a[1] for a in flowers[1:]] == [200, 200, 500, 500, 500, 500, 401], flowers
    assert direct == [path for path, *_ in ours[1:-1]]  # every call past the node's authentication, in order
    assert len(set(direct)) == 6


def test_what_reply_batch_relies_on_in_flowers_http_grid():
    """launcher.flower.reply_batch wraps the grid's client while its pull_messages runs: the grid reaches that client
    through ``_runtime_client`` (a property giving ``self._client``; connected means ``_client`` is set), makes one
    PullMessages, then per reply pulls its tree's objects through the module's ``pull_objects`` and confirms it
    through the client's ConfirmMessageReceived; its node is ``self.node`` and its run ``self._run``."""
    import flwr.superlink.grid.http_grid as grid_module

    grid = grid_module.HttpGrid
    source = " ".join(inspect.getsource(grid.pull_messages).split())
    for text in ("res: PullAppMessagesResponse = self._runtime_client.PullMessages(",
                 "all_object_contents = pull_objects( object_ids=[ tree.object_id for tree in "
                 "iterate_object_tree(msg_tree) ], pull_object_fn=make_pull_object_fn_protobuf( "
                 "pull_object_protobuf=self._runtime_client.PullObject, node=self.node, run_id=run_id, ), )",
                 "self._runtime_client.ConfirmMessageReceived( ConfirmMessageReceivedRequest( node=self.node, "
                 "run_id=run_id, message_object_id=msg_id ) )", "run_id = cast(Run, self._run).run_id"):
        assert text in source, text
    assert "return cast(RuntimeHttpClient, self._client)" in inspect.getsource(grid._runtime_client.fget)
    assert "return self._client is not None" in inspect.getsource(grid._is_connected.fget)


def test_object_moves_made_on_the_tasks_thread_run_on_it_and_elsewhere_on_flowers_pools(monkeypatch):
    """launcher.flower.inline_moves swaps inflatable_utils' ``concurrent``: its push_objects and pull_objects (the
    ones run_clientapp moves a message's objects with) make their pools as concurrent.futures.ThreadPoolExecutor.
    Judged by the thread each call ran on: on the tasks' thread every call runs there, in order, with Flower's
    retries and errors; on any other thread Flower's pool threads run them."""
    import threading

    import flwr.supercore.inflatable.inflatable_utils as objects
    from flwr.app import Array, ArrayRecord
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import ObjectPullError, ObjectUnavailableError

    from launcher.flower.inline_moves import inline_object_moves

    record = ArrayRecord({f"a{i}": Array(__import__("numpy").full(4, i, dtype="float32")) for i in range(4)})
    nested = get_all_nested_objects(record)
    assert len(nested) >= 4  # several objects: a pool would spread them over its threads

    def move(results: dict) -> None:
        pushed, ran_on, tries = {}, [], {}

        def push(object_id, content):
            ran_on.append(threading.current_thread())
            pushed[object_id] = content

        def pull(object_id):
            ran_on.append(threading.current_thread())
            tries[object_id] = tries.get(object_id, 0) + 1
            if tries[object_id] == 1 and object_id == first:  # not there yet: Flower's back-off, then again
                raise ObjectUnavailableError(object_id)
            return pushed[object_id]

        def missing(object_id):
            raise ObjectUnavailableError(object_id)

        objects.push_objects(dict(nested), push, keep_objects=True)
        first = next(iter(pushed))
        pulled = objects.pull_objects(list(pushed), pull, initial_backoff=0.01)
        try:
            objects.pull_objects(list(pushed), missing, max_tries_per_object=2, initial_backoff=0.01)
            error = None
        except ObjectPullError as err:
            error = err
        results.update(pushed=pushed, pulled=pulled, ran_on=ran_on, tries=tries, error=error)

    inline, pooled = {}, {}
    tasks_thread = threading.Thread(target=move, args=(inline,))  # the thread that runs this process's tasks
    monkeypatch.setattr(objects, "concurrent", objects.concurrent)  # Flower's again after the test
    inline_object_moves(tasks_thread)
    started_by: list = []  # the thread that started each thread, from here on
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: started_by.append(threading.current_thread()) or
                        start(self))
    tasks_thread.start()
    tasks_thread.join()
    other = threading.Thread(target=move, args=(pooled,))
    other.start()
    other.join()

    for result in (inline, pooled):
        assert set(result["pushed"]) == set(nested) and result["pulled"] == result["pushed"]
        assert result["tries"][next(iter(result["pushed"]))] == 2  # retried after its back-off
        assert isinstance(result["error"], ObjectPullError)  # an object never there: Flower's error, raised
    assert set(inline["ran_on"]) == {tasks_thread}
    assert tasks_thread not in started_by  # no thread started for a move
    assert other not in pooled["ran_on"] and len(pooled["ran_on"]) == len(inline["ran_on"])
    assert other in started_by  # Flower's pools, started by the thread that moved


def test_flowers_logger_makes_records_only_at_levels_its_handlers_write(monkeypatch):
    """launcher.flower.plain_logs.records_only_at_written_levels: Flower's logger (level DEBUG) drops no record
    any of its handlers would write; a DEBUG call makes none while its console handler is at INFO."""
    import logging

    from flwr.supercore.logger import FLOWER_LOGGER, console_handler

    from launcher.flower.plain_logs import records_only_at_written_levels

    monkeypatch.setattr(FLOWER_LOGGER, "level", logging.DEBUG)  # Flower's defaults; restored after the test
    monkeypatch.setattr(console_handler, "level", logging.INFO)
    made = []
    factory = logging.getLogRecordFactory()

    def record(*args, **kwargs):
        made.append(args[4]) if args[4].startswith("fl-launch test:") else None  # this test's calls only
        return factory(*args, **kwargs)

    monkeypatch.setattr(logging, "_logRecordFactory", record)
    FLOWER_LOGGER.debug("fl-launch test: made and dropped")
    records_only_at_written_levels()
    FLOWER_LOGGER.debug("fl-launch test: not made")
    FLOWER_LOGGER.info("fl-launch test: made")
    console_handler.setLevel(logging.DEBUG)  # FLWR_LOG_LEVEL=DEBUG: every level written, so made
    FLOWER_LOGGER.setLevel(logging.DEBUG)
    records_only_at_written_levels()
    FLOWER_LOGGER.debug("fl-launch test: made at DEBUG")
    assert made == ["fl-launch test: made and dropped", "fl-launch test: made", "fl-launch test: made at DEBUG"]
