"""A simulated shop-floor system (MES) for tests and the demo: lots with routes, holds, retest
counts, check-in rules and idempotent check-outs over HTTP/JSON, with an outage switch.

The station never imports it: it is started as its own process (`python -m sim_mes serve`) and
reached by URL, like a real MES. It shares only the pure retest decision with the station.
"""
