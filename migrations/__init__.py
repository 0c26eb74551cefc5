"""Alembic migrations: the only way the registry schema changes."""
