"""A user's own Flower app (fl-launch --app): its folder, its declared requirements, task logs, virtual wrapper.

Imports processes/, flower/, pyenv/ and contract/; never devices/, run/ or cli/.
"""
