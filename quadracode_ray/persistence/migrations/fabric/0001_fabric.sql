-- The actor fabric: the event log, durable inboxes (de-duplication, retries, dead letters),
-- delegated tasks and the fleet's agents.

-- Every envelope, once (unique id), in the order the event bus logged it (seq).
CREATE TABLE qr_events (
    seq        bigserial   PRIMARY KEY,
    id         text        NOT NULL UNIQUE,
    sender     text        NOT NULL,
    recipient  text        NOT NULL,
    kind       text        NOT NULL,
    thread_id  text,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    attempt    integer     NOT NULL DEFAULT 0,
    logged_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_events_thread ON qr_events (thread_id, seq) WHERE thread_id IS NOT NULL;
CREATE INDEX qr_events_kind ON qr_events (kind, seq);
CREATE INDEX qr_events_sender ON qr_events (sender, seq);
CREATE INDEX qr_events_recipient ON qr_events (recipient, seq);
CREATE INDEX qr_events_created ON qr_events (created_at);

-- An envelope accepted by a restartable actor: written before the actor acknowledges it, so
-- the sender may forget it; the primary key is the de-duplication.
CREATE TABLE qr_deliveries (
    recipient    text        NOT NULL,
    envelope_id  text        NOT NULL,
    envelope     jsonb       NOT NULL,
    accepted_seq bigserial   NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'done', 'dead', 'abandoned')),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recipient, envelope_id)
);
CREATE INDEX qr_deliveries_pending ON qr_deliveries (recipient, accepted_seq) WHERE status = 'pending';
CREATE INDEX qr_deliveries_dead ON qr_deliveries (updated_at) WHERE status = 'dead';
CREATE INDEX qr_deliveries_accepted ON qr_deliveries (accepted_at);

-- A task the orchestrator delegated; the truth about it whatever happens to its agent.
CREATE TABLE qr_tasks (
    task_id             text        PRIMARY KEY,
    parent_thread_id    text        NOT NULL,
    instruction         text        NOT NULL,
    capability          text,
    requested_agent_id  text,
    agent_id            text,
    status              text        NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts            integer     NOT NULL DEFAULT 0,
    envelope_id         text,
    result              jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_tasks_open ON qr_tasks (status) WHERE status IN ('pending', 'running');
CREATE INDEX qr_tasks_thread ON qr_tasks (parent_thread_id, created_at);
CREATE INDEX qr_tasks_agent ON qr_tasks (agent_id) WHERE status = 'running';

-- Agents the fleet manager spawned, so the cap and hotpath marks survive its restart.
CREATE TABLE qr_fleet_agents (
    agent_id     text        PRIMARY KEY,
    kind         text        NOT NULL,
    capabilities jsonb       NOT NULL DEFAULT '[]'::jsonb,
    workspace_id text        NOT NULL,
    actor_name   text        NOT NULL,
    hotpath      boolean     NOT NULL DEFAULT false,
    alive        boolean     NOT NULL DEFAULT true,
    spawned_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    end_reason   text
);
CREATE INDEX qr_fleet_agents_alive ON qr_fleet_agents (spawned_at) WHERE alive;
