"""An emulated device fleet: each simulated client held to a device profile's CPU share, memory and link.

    from launcher.fleet.limits import ClientLimits, Limiter
    limiter = Limiter.choose()          # cgroup v2, cgroup v1 or the unprivileged fallback
    with limiter.limit("exp1-client-3", ClientLimits(cpu=0.3, memory=900 * 2**20), profile="pi4") as client:
        client.add(pid)

Imports launcher.processes and contract only; nothing in run/, cli/ or devices/ (they wire the fleet in).
"""
