"""Alembic's script directory; a package only so that type checkers tell its env.py apart."""
