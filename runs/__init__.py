"""The run engine: every run of a graph on a thread is a row of the durable queue ``qr_runs``,
executed by a run host and streamed from it. Plain asyncio and Postgres, no Ray: the actors in
``actors/`` embed a host; see ``runs/README.md``."""
