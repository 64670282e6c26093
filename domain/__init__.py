"""The pure domain: definitions every layer above shares, and the alert rule registry.

Sits just above `datashare` (settings, errors) and beside `expectations`: it imports neither
`warehouse`, `tasks` nor `flows`, so `warehouse/publish.py` may read it as freely as the steps.
"""
