"""What a foreground run shows: a live status line on a terminal, plain lines otherwise,
and a summary table at the end.

    view = make_view(run_id)                # RichView on a TTY, PlainView elsewhere
    Supervisor(folder, view=view).run()
    print_summary(folder.path, folder.read(), supervisor.events, view.console)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table


class QuietWhenUnread:
    """stdout (or stderr) that goes quiet once whoever reads it has gone (``fl-launch ... 2>&1 | head -1``):
    the write that meets the broken pipe, and every one after it, goes nowhere, and the run goes on (its
    folder has it all)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.unread = False

    def _quiet(self) -> None:
        self.unread = True
        try:  # the interpreter's own flush at exit goes nowhere too
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def write(self, text: str) -> int:
        if not self.unread:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._quiet()
        return len(text)

    def flush(self) -> None:
        if not self.unread:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._quiet()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def quiet_stderr_when_unread() -> None:
    """sys.stderr goes quiet as the console's stdout does (click.echo(err=True), print(file=sys.stderr),
    warnings and tracebacks all write to it), whether or not both go to the same pipe."""
    if not isinstance(sys.stderr, QuietWhenUnread) and sys.stderr is not None:
        sys.stderr = QuietWhenUnread(sys.stderr)


def make_console(stderr: bool = False) -> Console:
    """Rich output (on stderr with ``stderr``: what is printed beside a file written to stdout); wide enough off
    a terminal that ids and paths are never cut. Off a terminal, stdout goes quiet when its reader has gone;
    stderr does anywhere."""
    quiet_stderr_when_unread()
    if stderr:
        return Console(file=sys.stderr, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
    tty = sys.stdout.isatty()
    return Console(file=None if tty else QuietWhenUnread(sys.stdout), highlight=False, soft_wrap=True,
                   width=None if tty else 200)


def _fmt_acc(acc) -> str:
    return "-" if acc is None or acc != acc else f"{acc:.4f}"


def round_line(v: dict) -> str:
    agg = "" if v["aggregated"] else "  (not aggregated)"
    return (f"round {v['round']}/{v['rounds']}: acc {_fmt_acc(v['acc'])} of the received model, "
            f"train loss {_fmt_acc(v['loss'])}, {v['replies']} replies, {v['failures']} failures, "
            f"{v['seconds']:.1f} s{agg}")


class PlainView:
    """One line per round and per message; fit for logs and pipes."""

    def __init__(self, run_id: str, console: Console | None = None) -> None:
        self.console = console or make_console()
        self.run_id = run_id

    def start(self) -> None:
        self.console.print(f"run {self.run_id}: starting")

    def stop(self) -> None: ...

    def update(self, **state) -> None: ...

    def event(self, event) -> None:
        if event.kind == "server_round_end":
            self.console.print(round_line(event.values))
        elif event.kind == "server_final":
            self.console.print(f"final model accuracy {_fmt_acc(event.values['acc'])} "
                               f"over {event.values['num_test']} test samples")
        elif event.kind == "served":
            v = event.values
            self.console.print(f"{v['task']}: served the round {v['round']} model to {v['replies']} of "
                               f"{v['clients']} clients")

    def message(self, text: str) -> None:
        self.console.print(text)


class RichView(PlainView):
    """The same lines, under a status line that refreshes: round, clients alive, accuracy."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id, Console())
        self._state: dict = {}
        self._t0 = time.monotonic()
        self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)

    def _render(self):
        s = self._state
        if not s:
            return f"[bold]run {self.run_id}[/]: starting"
        rnd = "waiting for clients" if s.get("round", 0) == 0 else f"round {s['round']}/{s['rounds']}"
        return (f"[bold]run {self.run_id}[/]  {rnd}  clients alive {s.get('alive', 0)}/{s.get('clients', 0)}"
                f"  latest mean acc {_fmt_acc(s.get('acc'))}  {time.monotonic() - self._t0:.0f} s")

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._live.stop()

    def update(self, **state) -> None:
        self._state = state
        self._live.update(self._render())


def make_view(run_id: str):
    quiet_stderr_when_unread()
    return RichView(run_id) if sys.stdout.isatty() else PlainView(run_id)


def print_summary(folder: Path, info: dict, events, console: Console | None = None) -> None:
    console = console or make_console()
    rounds = [e.values for e in events if e.kind == "server_round_end"]
    if rounds:
        table = Table(title=f"run {info.get('run_id')}: {info.get('status')}")
        for col in ("round", "replies", "failures", "aggregated", "acc (received model)", "train loss", "seconds"):
            table.add_column(col, justify="right")
        for v in rounds:
            table.add_row(str(v["round"]), str(v["replies"]), str(v["failures"]), "yes" if v["aggregated"] else "no",
                          _fmt_acc(v["acc"]), _fmt_acc(v["loss"]), f"{v['seconds']:.1f}")
        console.print(table)
    for v in (e.values for e in events if e.kind == "round_not_aggregated"):
        console.print(f"round {v['round']} not aggregated: {v['reason']}")
    for v in (e.values for e in events if e.kind == "app_clients_failed"):
        console.print(f"round {v['round']} {v['task']}: {v['failures']} of {v['clients']} clients raised; "
                      f"tracebacks in {v['path']}")
    if info.get("final_accuracy") is not None:
        console.print(f"final model accuracy: {_fmt_acc(info['final_accuracy'])} "
                      f"over the union of {info.get('final_test_samples')} client test samples")
    console.print(f"status: {info.get('status')}{' (' + info['reason'] + ')' if info.get('reason') else ''}")
    console.print(f"run folder: {folder}")
