"""Alembic migrations of the results schema: env.py and one file per revision in versions/.

Run by station.results.migrate when a store opens a database an older version made.
"""
