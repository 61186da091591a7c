"""A run's local processes: the process table and roles, fork server, kill tags, cgroups, ports,
node commands, restarts.

Imports apps/, flower/ (the programs it starts), pyenv/ and contract/; never devices/, run/ or cli/.
"""
