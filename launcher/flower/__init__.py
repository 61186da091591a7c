"""Every use of Flower beyond its public API, in one place; tests/test_flower_internals.py pins each, for each
Flower release in setup.py's range (release: the range, and which release is here).

    quick_supernode   Flower's SuperNode with its idle sleeps answered by bells (its loop module rewired)
    server_tick       Flower's HTTP servers (uvicorn) tick once a second while idle, waking at once on a stop
    warm_clientapp    a long-lived task host on the SuperNode's Runtime API (Flower's run_clientapp)
    strategy_log      the lines Flower's strategies write, read back (rounds, aggregated metrics)
    run_record        a run's status as the SuperLink records it (flwr ls --format json)
    node_log          the node id a SuperNode logs when it registers
    config_args       Flower's own parser of --node-config / --run-config pairs
    clientapp_calls   every ClientApp call of a task process through one wrapper (--app round lines)
    release           the Flower releases fl-launch is tested with (1.41, 1.42), and the one installed here

Imports processes/ and apps/ (what a task host runs) and contract/; never devices/, run/ or cli/.
"""
