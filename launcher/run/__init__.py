"""One run: its options and their checks, its plan, its folder (run.json) and status, the supervisor.

    options.py     LaunchOptions: every option, and validate(), the one place options are checked together
    plan.py        prepare_run / prepare_resume: a run folder ready for a supervisor, or one line of why not
    run_plan.py    RunPlan: run.json's "plan", typed, read once
    folder.py      RunFolder: run.json, the supervisor lock, the disk reserve, listing a log dir's runs
    run_status.py  RunStatus: prepared, starting, running, finished, failed, interrupted, orphaned
    liveness.py    what a run is doing now: run.json checked against the lock, the kernel and its cgroup
    supervisor.py  Supervisor: start the run's processes, poll, decide, stop
    resources.py   the memory and disk a run will take, checked before anything starts
    ray_cluster.py a virtual run's Ray: the cluster it joins (--ray-address), its check, Ray's logs in RUN/ray

Imports devices/, fleet/, processes/, apps/, flower/, stats/, pyenv/, contract/, simulator/ and partitions/;
never cli/.
"""
