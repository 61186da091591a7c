"""A run's local processes: the process table and roles, fork server, kill tags, cgroups, ports,
node commands, restarts.

Imports flower/ (the programs it starts), pyenv/ and contract/; never apps/, devices/, run/ or cli/.
"""
