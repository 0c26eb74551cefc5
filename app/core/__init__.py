"""The base every layer stands on: settings (config), the database engine, sessions and
column types (db), errors, migrations, the repository base and the rules for names. It
imports nothing of ours from above it."""
