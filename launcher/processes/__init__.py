"""A run's local processes: the process table and roles, fork server, kill tags, cgroups, ports,
node commands, restarts, a host's GPUs and how its clients share them.

Imports apps/, flower/ (the programs it starts), pyenv/ and contract/; never devices/, run/ or cli/.
"""
