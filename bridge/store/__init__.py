"""Persistence: SQLModel tables, Alembic migrations and the database engine."""
