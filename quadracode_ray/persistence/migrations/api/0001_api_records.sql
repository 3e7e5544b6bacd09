-- Records of the LangGraph Agent Server API: assistants (with versions), threads, and runs.
-- The runs table is also the durable run queue: a run is 'pending' until an executor claims it.

CREATE TABLE qr_assistants (
    assistant_id uuid        PRIMARY KEY,
    graph_id     text        NOT NULL,
    name         text        NOT NULL,
    description  text,
    config       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    context      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version      integer     NOT NULL DEFAULT 1,
    owner        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_assistants_graph ON qr_assistants (graph_id);
CREATE INDEX qr_assistants_metadata ON qr_assistants USING gin (metadata jsonb_path_ops);

CREATE TABLE qr_assistant_versions (
    assistant_id uuid        NOT NULL REFERENCES qr_assistants (assistant_id) ON DELETE CASCADE,
    version      integer     NOT NULL,
    graph_id     text        NOT NULL,
    name         text        NOT NULL,
    description  text,
    config       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    context      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (assistant_id, version)
);

CREATE TABLE qr_threads (
    thread_id        uuid        PRIMARY KEY,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    config           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'idle'
                     CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
    "values"         jsonb,
    interrupts       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error            jsonb,
    -- Stateless runs get a thread of their own that is deleted when the run ends.
    temporary        boolean     NOT NULL DEFAULT false,
    owner            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    state_updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_threads_metadata ON qr_threads USING gin (metadata jsonb_path_ops);
CREATE INDEX qr_threads_status ON qr_threads (status);

CREATE TABLE qr_runs (
    run_id             uuid        PRIMARY KEY,
    thread_id          uuid        NOT NULL REFERENCES qr_threads (thread_id) ON DELETE CASCADE,
    assistant_id       uuid        NOT NULL,
    status             text        NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'running', 'error', 'success', 'timeout', 'interrupted')),
    metadata           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    kwargs             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    multitask_strategy text        NOT NULL DEFAULT 'enqueue',
    -- The executor actor the run was pushed to (runs of one executor are recovered by it).
    executor           text,
    attempt            integer     NOT NULL DEFAULT 0,
    -- Not claimable before this time (after_seconds).
    available_at       timestamptz NOT NULL DEFAULT now(),
    cancel_reason      text,
    error              jsonb,
    owner              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    ended_at           timestamptz
);
CREATE INDEX qr_runs_thread ON qr_runs (thread_id, created_at);
CREATE INDEX qr_runs_queue ON qr_runs (status, available_at) WHERE status IN ('pending', 'running');

-- Stream events of runs created with stream_resumable, for Last-Event-ID resumption and
-- joins after the executor that produced them has gone.
CREATE TABLE qr_run_events (
    run_id   uuid    NOT NULL REFERENCES qr_runs (run_id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    event    text    NOT NULL,
    data     bytea   NOT NULL,
    PRIMARY KEY (run_id, seq)
);
