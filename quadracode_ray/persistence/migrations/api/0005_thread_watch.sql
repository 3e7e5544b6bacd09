-- Watching threads (GET /threads/{thread_id}/stream) without polling for what happens to them.
--
-- qr_thread_events: thread-level events that belong to no run (state_update, published when a
-- thread's state is updated by hand), kept so a watcher can resume after one (Last-Event-ID).
--
-- qr_thread_watches: the threads that some replica watches, one row per (thread, replica
-- listener), refreshed by that replica while it watches and expiring when it stops (or dies).
-- A new run or thread event of a watched thread sends NOTIFY qr_thread_activity with the thread
-- id; each replica has one LISTEN connection shared by all its watchers. Threads nobody watches
-- send nothing, so a run's commit does not take Postgres' global NOTIFY lock on the hot path.

CREATE TABLE qr_thread_events (
    event_id   bigserial   PRIMARY KEY,
    thread_id  uuid        NOT NULL REFERENCES qr_threads (thread_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    event      text        NOT NULL,
    data       bytea       NOT NULL
);
CREATE INDEX qr_thread_events_thread ON qr_thread_events (thread_id, created_at);

-- No foreign key to qr_threads: a watch must never wait on (or block) a run's lock of the thread.
CREATE TABLE qr_thread_watches (
    thread_id  uuid        NOT NULL,
    listener   text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (thread_id, listener)
);
CREATE INDEX qr_thread_watches_expiry ON qr_thread_watches (expires_at);

CREATE FUNCTION qr_notify_thread_watchers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM qr_thread_watches w WHERE w.thread_id = NEW.thread_id AND w.expires_at > now()) THEN
        PERFORM pg_notify('qr_thread_activity', NEW.thread_id::text);
    END IF;
    RETURN NULL;
END
$$;

-- On the table, not in qr_create_run: runs queued from the fabric (an agent's result) insert
-- into qr_runs directly and must wake watchers too.
CREATE TRIGGER qr_runs_notify_watchers AFTER INSERT ON qr_runs
    FOR EACH ROW EXECUTE FUNCTION qr_notify_thread_watchers();
CREATE TRIGGER qr_thread_events_notify_watchers AFTER INSERT ON qr_thread_events
    FOR EACH ROW EXECUTE FUNCTION qr_notify_thread_watchers();
