"""Persistence: SQLAlchemy models, Alembic migrations, sessions, and the ciphertext blob store.

Owns tables and blob files. Must not encrypt or decrypt by itself (that is `security.crypto`), nor know HTTP.
"""
