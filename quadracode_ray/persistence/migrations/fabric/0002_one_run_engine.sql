-- One run engine: every run of the orchestrator graph is a run in qr_runs, on a thread of
-- qr_threads, whose id is a UUID. The threads the orchestrator actor ran by itself before
-- (checkpoints whose metadata carries qr_envelope_id, threads of open tasks, threads of inputs
-- accepted and not yet handled) become threads of qr_threads, so they go on as runs. A thread
-- named otherwise than by a UUID gets the id runs.threads.named_thread_id(name), computed here as
-- Python computes it (a UUID v3: MD5 of a fixed namespace and the name), keeps its name in its
-- metadata (fabric_thread_name), and its checkpoints, tasks, pending inputs and logged
-- envelopes move to that id.

CREATE OR REPLACE FUNCTION qr_named_thread_id(p_name text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    v_hex text := replace(btrim(replace(replace(p_name, 'urn:', ''), 'uuid:', ''), '{}'), '-', '');
    v_md5 text;
BEGIN
    IF v_hex ~ '^[0-9a-fA-F]{32}$' THEN  -- a UUID in any form Python's uuid.UUID reads
        RETURN v_hex::uuid;
    END IF;
    v_md5 := md5(decode('5d0c9a4e2b7f4d1e9c3a7f6e1b2a8c40', 'hex') || convert_to(p_name, 'UTF8'));
    RETURN (substr(v_md5, 1, 12) || '3' || substr(v_md5, 14, 3)
            || substr('89ab', (('x' || substr(v_md5, 17, 1))::bit(4)::int & 3) + 1, 1)
            || substr(v_md5, 18, 15))::uuid;
END
$$;

CREATE TEMP TABLE qr_engine_threads (name text PRIMARY KEY, thread_id uuid NOT NULL) ON COMMIT DROP;

INSERT INTO qr_engine_threads (name, thread_id)
SELECT name, qr_named_thread_id(name) FROM (
    SELECT parent_thread_id AS name FROM qr_tasks WHERE status IN ('pending', 'running')
    UNION
    SELECT envelope->>'thread_id' FROM qr_deliveries
    WHERE recipient = 'orchestrator' AND status = 'pending'
      AND envelope->>'kind' IN ('user_message', 'graph_input', 'task_result')
) AS found
WHERE name IS NOT NULL AND name <> ''
ON CONFLICT (name) DO NOTHING;

DO $$
BEGIN
    -- LangGraph's tables exist once the system has started (they are set up after migrations).
    IF to_regclass('checkpoints') IS NOT NULL THEN
        INSERT INTO qr_engine_threads (name, thread_id)
        SELECT DISTINCT thread_id, qr_named_thread_id(thread_id) FROM checkpoints
        WHERE metadata ? 'qr_envelope_id' AND thread_id <> ''
        ON CONFLICT (name) DO NOTHING;
        UPDATE checkpoints c SET thread_id = m.thread_id::text FROM qr_engine_threads m
        WHERE c.thread_id = m.name AND m.name <> m.thread_id::text;
        UPDATE checkpoint_blobs c SET thread_id = m.thread_id::text FROM qr_engine_threads m
        WHERE c.thread_id = m.name AND m.name <> m.thread_id::text;
        UPDATE checkpoint_writes c SET thread_id = m.thread_id::text FROM qr_engine_threads m
        WHERE c.thread_id = m.name AND m.name <> m.thread_id::text;
    END IF;
END
$$;

UPDATE qr_tasks t SET parent_thread_id = m.thread_id::text FROM qr_engine_threads m
WHERE t.parent_thread_id = m.name AND m.name <> m.thread_id::text;

UPDATE qr_deliveries d SET envelope = jsonb_set(d.envelope, '{thread_id}', to_jsonb(m.thread_id::text))
FROM qr_engine_threads m
WHERE d.envelope->>'thread_id' = m.name AND m.name <> m.thread_id::text;

UPDATE qr_events e SET thread_id = m.thread_id::text FROM qr_engine_threads m
WHERE e.thread_id = m.name AND m.name <> m.thread_id::text;

-- assistant_id: the default assistant of graph "orchestrator" (runs.graph_registry.default_assistant_id).
INSERT INTO qr_threads (thread_id, metadata)
SELECT thread_id,
       jsonb_build_object('graph_id', 'orchestrator', 'assistant_id', '224cf0be-a5c6-522f-86f0-b84379f45109')
       || CASE WHEN name <> thread_id::text THEN jsonb_build_object('fabric_thread_name', name)
               ELSE '{}'::jsonb END
FROM qr_engine_threads
ON CONFLICT (thread_id) DO NOTHING;
