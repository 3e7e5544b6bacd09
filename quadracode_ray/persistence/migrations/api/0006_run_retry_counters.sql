-- A run's retries, counted by cause. ``attempt`` counts every start of a run (its events are
-- numbered from it, and an attempt after the first resumes from the last checkpoint); what a
-- run may still be retried for is counted apart, so that one cause cannot use up another's
-- budget (a Postgres outage that retried a run five times must not make the next death of its
-- executor its last, nor cost it the retries its assistant's ``error_attempts`` allow):
--   executor_deaths: its executor died while running it (runs/queue.py recover, ``run_max_attempts``);
--   outage_retries:  its graph met a database outage (runs/host.py, OUTAGE_ATTEMPTS);
--   error_retries:   its graph raised (runs/host.py, the run's ``error_attempts``).
ALTER TABLE qr_runs
    ADD COLUMN executor_deaths integer NOT NULL DEFAULT 0,
    ADD COLUMN outage_retries  integer NOT NULL DEFAULT 0,
    ADD COLUMN error_retries   integer NOT NULL DEFAULT 0;
