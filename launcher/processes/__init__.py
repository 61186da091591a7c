"""A run's local processes: the process table and roles, fork server, kill tags, cgroups, ports,
node commands, restarts.

Imports flower/ (the modules it starts) and contract/; never run/ or cli/.
"""
