"""Reading a run's logs back: following a log as it grows, a client's history, tables and plots.

    fleet_runs.py  an emulated fleet's run read back per profile: who took part, how long, where the time went, who
                   was cut
    follow.py      Read the complete lines a log file gained since the last call, as parsed events
    history.py     A client's rounds, epochs and events, rebuilt from its log (fl-launch's or MindSpore's)
    tables.py      Per-client and across-client numbers out of client logs, as pandas tables
    tensorboard.py A run's rounds as TensorBoard scalars, written with the tensorboard package's own writer

Imports contract/ (the log lines, the fleet's record) only.
"""
