"""Every use of Flower beyond its public API, in one place; tests/test_flower_internals.py pins each, for each
Flower release in setup.py's range (release: the range, and which release is here).

    quick_supernode   Flower's SuperNode with its idle sleeps answered by bells (its loop module rewired)
    object_batch      a message's objects pulled or pushed in one HTTP exchange (a batch path QuickRoutes answers)
    fleet_chain       a SuperNode's Fleet calls for a task in two exchanges: the message with its objects; the
                      confirmation, the reply with its objects and the pull after it (QuickRoutes answers them)
    server_tick       Flower's HTTP servers (uvicorn) tick once a second while idle, waking at once on a stop
    node_tasks        the built-in app's tasks run by its SuperNode's own process (Runtime API calls in-process)
    in_node_runtime   those tasks' Runtime API calls answered by Flower's handlers, as its routes call them
    inline_moves      those tasks' object pulls and pushes run on the task's thread, not a pool's per move
    warm_clientapp    a long-lived task host on the SuperNode's Runtime API (Flower's run_clientapp), a user's app
    strategy_log      the lines Flower's strategies write, read back (rounds, aggregated metrics)
    run_record        a run's status as the SuperLink records it (flwr ls --format json)
    node_log          the node id a SuperNode logs when it registers
    config_args       Flower's own parser of --node-config / --run-config pairs
    clientapp_calls   every ClientApp call of a task process through one wrapper (--app round lines)
    release           the Flower releases fl-launch is tested with (1.41, 1.42), the one installed here, and
                      its commands (flwr_bin) from this environment
    quick_superlink   Flower's SuperLink, its HTTP middleware run only on the requests it acts on
    quick_http        Flower's unary routes answered without the per-layer machinery of its HTTP stack
    node_signatures   a SuperNode's signed timestamp made every few seconds, each checked once by the SuperLink
    http_gates        Flower's HTTP middleware, each layer run only on the requests it acts on
    task_worker       the task host's child that runs a task (a user's app: one per task)
    memory_growth     the rule that renews a task runner whose memory grew (a worker, a built-in client);
                      a task's freed heap given back, or kept for the next (a built-in client)
    task_output       a task's last push to its SuperNode, retried on a fresh connection
    task_log          an --app ClientApp's output and round lines in client_<i>/client.log
    compute_slots     a few tasks compute at a time on a host (about one per core), the others wait
    task_claim        an acquired task kept claimed (Flower's task heartbeat) while it waits for a compute slot
    pull_lock         a SuperNode's pull of a message, visible to its task host
    plain_logs        Flower's commands with their colour off where their output goes to a file; its logger
                      making records only at the levels its handlers write
    fleet_listener    the SuperLink's Fleet API (only it) on a second address, for nodes that connect directly
    register_nodes    SuperNodes' public keys registered through Flower's CLI app, in one process
    direct_routes     a round's Fleet and Runtime calls answered by Flower's endpoint without FastAPI's router
    reply_batch       a ServerApp's replies: all their objects pulled in one exchange, their confirmations in one
    forked_tasks      the ServerApp a run's SuperExec starts, forked warm by the run's fork server (its Popen)
    imports_frozen    a start's imports made with Python's collector off, then frozen out of its reach

Imports contract/ only: a leaf that processes/, apps/ and everything above use, never the other way.
"""
