"""The three commands (fl-launch, fl-stats, fl-finish): parse, check, print; the work is in run/ and below.

    config_file.py  Options from a file: a TOML file of fl-launch's options, or an earlier run's run.json
    errors.py       Click commands that answer bad input with one line and exit code 2, never a traceback
    finish.py       ``fl-finish``: stop every process of a run by its kill tag, and nothing else
    launch.py       ``fl-launch``: train (or serve a model to) N Flower clients on this machine
    live_view.py    What a foreground run shows: a live status line on a terminal, plain lines otherwise,
    option_types.py Click types that refuse what the run cannot use, from the command line or from a --config file
    stats.py        ``fl-stats``: loss and accuracy out of client logs, per client or across a run's clients

Imports anything in launcher/ (run/, devices/, fleet/, apps/, processes/, flower/, stats/, pyenv/) and contract/,
simulator/ and partitions/; nothing imports it.
"""
