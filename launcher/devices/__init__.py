"""Clients on other machines: the hosts file, SSH, the device agent and the
fleet the supervisor tends, preflight checks, offline install, TLS.

Imports processes/ (a device runs the same node processes), apps/, flower/, pyenv/ and contract/;
never run/ or cli/.
"""
