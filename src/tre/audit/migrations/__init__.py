"""The audit database's alembic migrations (env.py, versions/), and the runner that the
hub-side databases share (`runner`): every schema change is a revision here, and the
audit store upgrades to the newest one when it opens the database."""
