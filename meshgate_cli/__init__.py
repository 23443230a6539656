"""`meshgate`: the command line for pipelines, a client of Meshgate's REST API (`/api/v1/`).

It imports nothing of the server: every command is one or a few HTTP calls, so the CLI can be
installed on a CI runner on its own.
"""
