"""Reading a run's logs back: following a log as it grows, a client's history, tables and plots.

Imports contract/ (the log lines) only.
"""
