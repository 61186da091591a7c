"""A user's own Flower app (fl-launch --app): its folder, its declared requirements, node config, task logs.

Imports devices.python_facts and contract/; never run/ or cli/.
"""
