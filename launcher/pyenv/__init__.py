"""A Python environment's facts: what is installed, its markers, what a wheel or requirement needs there.

    own_builds.py   Distributions a device may hold a build of its own (a Jetson's CUDA torch), and the range fl-
                    launch takes
    python_facts.py What a Python environment is and holds, as plain data: read here, or sent as source to a device's
                    Python
    wheel_needs.py  Which wheels a device lacks for ``pip install fl_launch.whl``, and pip's flags to fetch them for
                    its platform

Used for this machine (an --app's declared requirements) and for devices (preflight, offline install).
Imports nothing of launcher/ outside this package.
"""
