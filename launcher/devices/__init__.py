"""Clients on other machines: the hosts file, SSH, the device agent, the
run's devices as the supervisor tends them, preflight checks, offline install, TLS, direct connections
(--server-address: the address checked, the nodes' keys made and registered).

Imports processes/ (a device runs the same node processes), apps/, flower/, pyenv/ and contract/;
never run/ or cli/.
"""
