"""Persistence: tables, migrations, the database adapters and the stores (the only SQL)."""
