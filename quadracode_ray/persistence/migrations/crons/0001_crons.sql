-- Crons of the LangGraph Agent Server API: a schedule that creates a run each time it is due.
-- Every API replica runs a scheduler; a due cron is claimed with FOR UPDATE SKIP LOCKED, so
-- one fire happens once however many replicas look at the same time.

CREATE TABLE qr_crons (
    cron_id          uuid        PRIMARY KEY,
    assistant_id     uuid        NOT NULL,
    -- NULL: each fire is a stateless run on a fresh thread; otherwise the thread the runs go to.
    thread_id        uuid,
    owner            text,
    schedule         text        NOT NULL,
    timezone         text,
    end_time         timestamptz,
    -- The run request each fire makes (as the client sent it, as the official server keeps it).
    payload          jsonb       NOT NULL,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    on_run_completed text        CHECK (on_run_completed IN ('delete', 'keep')),
    enabled          boolean     NOT NULL DEFAULT true,
    next_run_date    timestamptz NOT NULL,
    last_run_id      uuid,
    last_fired_at    timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_crons_due ON qr_crons (next_run_date) WHERE enabled;
CREATE INDEX qr_crons_assistant ON qr_crons (assistant_id);
CREATE INDEX qr_crons_thread ON qr_crons (thread_id) WHERE thread_id IS NOT NULL;
CREATE INDEX qr_crons_metadata ON qr_crons USING gin (metadata jsonb_path_ops);
