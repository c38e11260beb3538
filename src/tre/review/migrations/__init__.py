"""The review database's alembic migrations (env.py, versions/): every schema change is
a revision here, and the review store upgrades to the newest one when it opens the
database (through `tre.audit.migrations.runner`)."""
