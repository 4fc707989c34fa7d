"""Alembic revisions of the results schema, oldest first (0001 is schema version 1).

Each revision also sets schema_info.version, which older software reads to refuse a newer file.
"""
