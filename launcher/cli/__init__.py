"""The three commands (fl-launch, fl-stats, fl-finish): parse, check, print; the work is in run/ and below.

Imports anything in launcher/; nothing imports it.
"""
