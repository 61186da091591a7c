"""One run: its options and their checks, its plan, its folder (run.json) and status, the supervisor.

    options.py     LaunchOptions: every option, and validate(), the one place options are checked together
                   (CheckedOptions: what passed, with the fleet file read once; app_settings(): the app's settings)
    plan.py        prepare_run / prepare_resume: a run folder ready for a supervisor, or one line of why not
    record.py      RunRecord: run.json's one record of a run (the options as given, the plan's facts; the app's
                   settings derived), read by one reader, of today's format or one from before issue 27
    run_plan.py    RunPlan: what the launch decided (run.json's "plan" keeps its facts; the rest is the options')
    folder.py      RunFolder: run.json, the supervisor lock, the disk reserve, listing a log dir's runs
    run_status.py  RunStatus: prepared, starting, running, finished, failed, interrupted, orphaned
    liveness.py    what a run is doing now: run.json checked against the lock, the kernel and its cgroup
    supervisor.py  Supervisor: start the run's processes, poll, decide, stop
    parts.py       the parts that run the clients (here, the fleet's links, on devices): start, poll, records, stop
    outcome.py     the end-of-run rules: events, liveness and the clock in, an outcome out (pure)
    run_logs.py    RunLogs: server.log's events and a user's app's rounds, read each poll into the progress
    journal.py     RunJournal: what a live run writes into run.json (processes, status, activity, restarts, end);
                   write_record: the run's record, its one writer
    flower_commands.py  the SuperLink's and `flwr run`'s command lines, and flwr's config.toml for them
    resources.py   the memory and disk a run will take, checked before anything starts
    ray_cluster.py a virtual run's Ray: the cluster it joins (--ray-address), its check, Ray's logs in RUN/ray

Imports devices/, fleet/, processes/, apps/, flower/, stats/, pyenv/, contract/, simulator/ and partitions/;
never cli/.
"""
