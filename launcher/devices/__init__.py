"""Clients on other machines: the hosts file, SSH, the device agent, the
run's devices as the supervisor tends them, preflight checks, offline install, TLS, direct connections
(--server-address: the address checked, the nodes' keys made and registered).

    agent.py       The part of a run that lives on a device: its client nodes, started, reaped and stopped there
    bench.py       ``fl-launch --hosts FILE --check --bench``: each device measured against this machine, as a
                   fleet.toml
    hosts.py       The devices file: which hosts take clients, how to reach them, where to work
    install.py     ``fl-launch --hosts FILE --install``: put this launcher's own version onto every device, no
                   internet needed there
    preflight.py   ``fl-launch --hosts FILE --check``: can each device run its clients?
    remote.py      The launcher's side of a device: stage its files, start its agent, pull its logs, stop it
    run_devices.py A run's devices as the supervisor tends them: staged, each with its tunnel and agent, pulled,
                   stopped
    ssh.py         OpenSSH as the transport to devices: the user's config, agent and keys, in batch mode
    tls.py         A CA and a SuperLink certificate made for one run (``fl-launch --tls``)

Imports processes/ (a device runs the same node processes), apps/, flower/, fleet/ (bench.py writes a fleet
file's units), pyenv/ and contract/; never run/ or cli/.
"""
