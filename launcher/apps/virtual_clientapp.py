"""A user's ClientApp on Flower's simulation runtime (``--app DIR --mode virtual``), logging as in process mode.

    prepare_virtual_app(user_app, run_dir)      # run_dir/app: the app, its ClientApp wrapped
    # PosixPath('.../run_dir/app')
    # run_dir/app/fl_launch_clientapp.py, named by the copy's pyproject.toml as its clientapp:
    # app = LoggedClientApp("npapp.client_app:app", "/abs/run_dir")

In process mode each task runs in its own process, which ``launcher.flower.task_log``
points at one client's log. On the simulation runtime a few Ray workers serve every
virtual node in turn, so the wrapper does it per call: it finds the client by the
``partition-id`` Flower gives the node, sends the app's prints into
client_<i>/client.log for the call's length and writes the same round lines around
it. The client's ``--node-config`` values (client_<i>/extra_node_config.toml, written
when the run is prepared) join its node config before the app sees it.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path

from flwr.clientapp import ClientApp

from contract.loglines import LogWriter, client_log_path, write_ray_node
from contract.run_layout import client_dir
from launcher.apps.user_app import AppError, UserApp, read_app
from launcher.flower.task_log import LinesToLog, logged_task
from launcher.processes.node_config import read_extra

MODULE = "fl_launch_clientapp"  # the wrapper's module in the app's copy
APP_COPY = "app"  # the copy's folder in the run folder
_CLIENTAPP_LINE = re.compile(r"""(?m)^(\s*clientapp\s*=\s*)(["'])[^"'\n]*\2""")


def _load(ref: str) -> ClientApp:
    module, _, attr = ref.partition(":")
    app = importlib.import_module(module)
    for name in attr.split(".") if attr else ["app"]:
        app = getattr(app, name)
    return app


class LoggedClientApp(ClientApp):
    """The user's ClientApp (``ref``), each call logged into ``run_dir``/client_<partition-id>/client.log."""

    def __init__(self, ref: str, run_dir: str) -> None:
        super().__init__()
        self._inner, self._run_dir = _load(ref), Path(run_dir)

    def __call__(self, message, context):
        folder = client_dir(self._run_dir, int(context.node_config["partition-id"]))
        context.node_config.update(read_extra(folder))
        log = LogWriter(client_log_path(folder), "FLClient")
        write_ray_node(log)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = LinesToLog(log, "INFO"), LinesToLog(log, "WARNING")
        try:
            return logged_task(log, self._inner, message, context)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = saved
            log.close()


def prepare_virtual_app(app: UserApp, run_dir: Path) -> Path:
    """The app copied into ``run_dir/app``, its pyproject's clientapp the logging wrapper of its own."""
    copy = run_dir / APP_COPY
    shutil.copytree(app.path, copy, ignore=shutil.ignore_patterns("__pycache__", ".git", ".venv", "*.fab"))
    (copy / f"{MODULE}.py").write_text(
        f'"""Written by fl-launch (--mode virtual): the app\'s ClientApp, logging into the run folder."""\n'
        f"from launcher.apps.virtual_clientapp import LoggedClientApp\n\n"
        f"app = LoggedClientApp({app.clientapp!r}, {str(run_dir.resolve())!r})\n")
    project = copy / "pyproject.toml"
    text, count = _CLIENTAPP_LINE.subn(lambda m: f'{m.group(1)}"{MODULE}:app"', project.read_text(), count=1)
    project.write_text(text)
    if count != 1 or read_app(copy).clientapp != f"{MODULE}:app":
        raise AppError(f"--app {app.path}: cannot point a copy of its pyproject.toml's clientapp at fl-launch's "
                       f"logging wrapper (write it as clientapp = \"module:attr\" in [tool.flwr.app.components])")
    return copy
