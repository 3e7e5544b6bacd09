-- A run's place in its thread's tape, for good. The v3 thread stream numbers its events (``seq``,
-- the cursor a client reconnects with) by run: a run's events are numbered within a block of its
-- own, ``tape_ordinal`` blocks from the thread's start (serve_app/runs/v3_session.py). Counting
-- the runs that still exist would not do: a rollback deletes its run, and a run that was not
-- stored (not resumable) replays fewer events once its host forgot them, and either would
-- renumber every later event, so a client resuming with ``since`` would miss events.
--
-- qr_threads.runs_created counts every run ever queued on the thread; each new run takes the
-- next value. Both ways of queueing a run (qr_create_run, and runs/enqueue.py for the fabric's
-- runs) hold the thread's row lock already, so the count has no race.
ALTER TABLE qr_threads ADD COLUMN runs_created bigint NOT NULL DEFAULT 0;
ALTER TABLE qr_runs ADD COLUMN tape_ordinal bigint;

UPDATE qr_runs r SET tape_ordinal = o.n
FROM (SELECT run_id, row_number() OVER (PARTITION BY thread_id ORDER BY created_at, run_id) AS n
      FROM qr_runs) o
WHERE r.run_id = o.run_id;
UPDATE qr_threads t SET runs_created = c.n
FROM (SELECT thread_id, max(tape_ordinal) AS n FROM qr_runs GROUP BY thread_id) c
WHERE t.thread_id = c.thread_id;
ALTER TABLE qr_runs ALTER COLUMN tape_ordinal SET NOT NULL;

CREATE FUNCTION qr_number_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE qr_threads SET runs_created = runs_created + 1
    WHERE thread_id = NEW.thread_id
    RETURNING runs_created INTO NEW.tape_ordinal;
    -- no thread: the foreign key refuses the row; 0 keeps NOT NULL from hiding that error
    NEW.tape_ordinal := coalesce(NEW.tape_ordinal, 0);
    RETURN NEW;
END
$$;

CREATE TRIGGER qr_runs_number BEFORE INSERT ON qr_runs
    FOR EACH ROW EXECUTE FUNCTION qr_number_run();
