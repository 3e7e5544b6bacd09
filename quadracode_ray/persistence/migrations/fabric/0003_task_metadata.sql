-- What a delegated task carries to each agent it is given to (also after the orchestrator
-- restarts or the task is reassigned): the delegating assistant's config for the agent's graph
-- (assistant_config) and the trace of the run that delegated it (trace_context).
ALTER TABLE qr_tasks ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}'::jsonb;
