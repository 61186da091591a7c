"""A Python environment's facts: what is installed, its markers, what a wheel or requirement needs there.

Used for this machine (an --app's declared requirements) and for devices (preflight, offline install).
Imports nothing of launcher/ outside this package.
"""
