-- qr_create_run as in api/0003, plus p_start: a run that can start now (its thread has no run in
-- flight, no after_seconds) is inserted already claimed ('running', attempt 1) for p_executor, which
-- the caller then hands the row to in the call that follows the run's output (runs/wait, runs/stream):
-- no claim round trip. A run whose handover is lost stays 'running' on a live host that does not
-- know it; that host's sweep puts it back in the queue (actors/run_executor_queue.py stale_running).
DROP FUNCTION qr_create_run(uuid, uuid, uuid, text, jsonb, jsonb, text, text, text, double precision, boolean,
                            boolean, boolean);
CREATE FUNCTION qr_create_run(
    p_run_id uuid, p_thread_id uuid, p_assistant_id uuid, p_graph_id text, p_metadata jsonb, p_kwargs jsonb,
    p_strategy text, p_executor text, p_owner text, p_after_seconds double precision, p_stateless boolean,
    p_temporary boolean, p_create_thread boolean, p_start boolean)
RETURNS TABLE (
    run_id uuid, thread_id uuid, assistant_id uuid, status text, metadata jsonb, kwargs jsonb,
    multitask_strategy text, executor text, attempt integer, available_at timestamptz, cancel_reason text,
    error jsonb, owner text, created_at timestamptz, updated_at timestamptz, started_at timestamptz,
    ended_at timestamptz, inflight jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_thread_metadata jsonb;
    v_thread_config jsonb;
    v_thread_status text;
    v_thread_owner text;
    v_assistant_config jsonb;
    v_assistant_metadata jsonb;
    v_found boolean;
    v_inflight jsonb;
    v_run_metadata jsonb;
    v_run_config jsonb;
    v_start boolean;
BEGIN
    IF p_stateless THEN
        INSERT INTO qr_threads (thread_id, metadata, owner, temporary)
        VALUES (p_thread_id, jsonb_build_object('graph_id', p_graph_id, 'assistant_id', p_assistant_id),
                p_owner, p_temporary)
        ON CONFLICT (thread_id) DO NOTHING;
    END IF;
    SELECT t.metadata, t.config, t.status, t.owner INTO v_thread_metadata, v_thread_config, v_thread_status,
        v_thread_owner
    FROM qr_threads t WHERE t.thread_id = p_thread_id FOR UPDATE;
    v_found := FOUND AND (p_owner IS NULL OR v_thread_owner IS NOT DISTINCT FROM p_owner);
    IF NOT v_found THEN
        IF NOT p_create_thread THEN
            RAISE EXCEPTION 'qr:not_found';
        END IF;
        INSERT INTO qr_threads (thread_id, metadata, owner, temporary)
        VALUES (p_thread_id, '{}'::jsonb, p_owner, false) ON CONFLICT (thread_id) DO NOTHING;
        SELECT t.metadata, t.config, t.status INTO v_thread_metadata, v_thread_config, v_thread_status
        FROM qr_threads t WHERE t.thread_id = p_thread_id FOR UPDATE;
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object('run_id', r.run_id, 'executor', r.executor)), '[]'::jsonb)
    INTO v_inflight FROM qr_runs r WHERE r.thread_id = p_thread_id AND r.status IN ('pending', 'running');
    IF jsonb_array_length(v_inflight) > 0 AND p_strategy = 'reject' THEN
        RAISE EXCEPTION 'qr:busy';
    END IF;
    SELECT a.config, a.metadata INTO v_assistant_config, v_assistant_metadata
    FROM qr_assistants a WHERE a.assistant_id = p_assistant_id;
    v_assistant_config := coalesce(v_assistant_config, '{}'::jsonb);
    v_thread_config := coalesce(v_thread_config, '{}'::jsonb);
    v_run_metadata := coalesce(v_assistant_metadata, '{}'::jsonb) || coalesce(v_thread_metadata, '{}'::jsonb)
        || p_metadata;
    v_run_config := coalesce(p_kwargs -> 'config', '{}'::jsonb) || jsonb_build_object(
        'configurable', coalesce(v_thread_config -> 'configurable', '{}'::jsonb)
                        || coalesce(p_kwargs -> 'config' -> 'configurable', '{}'::jsonb),
        'metadata', v_run_metadata);
    UPDATE qr_threads t
    SET metadata = t.metadata || jsonb_build_object('graph_id', p_graph_id, 'assistant_id', p_assistant_id),
        config = CASE WHEN v_thread_status = 'busy' THEN t.config ELSE
            v_assistant_config || v_thread_config
            || (coalesce(p_kwargs -> 'config', '{}'::jsonb) - 'configurable' - 'metadata')
            || jsonb_build_object('configurable', coalesce(v_assistant_config -> 'configurable', '{}'::jsonb)
                                                  || coalesce(v_thread_config -> 'configurable', '{}'::jsonb))
            END,
        status = 'busy', updated_at = now()
    WHERE t.thread_id = p_thread_id;
    v_start := p_start AND jsonb_array_length(v_inflight) = 0 AND p_after_seconds <= 0;
    RETURN QUERY
    INSERT INTO qr_runs AS r (run_id, thread_id, assistant_id, metadata, kwargs, multitask_strategy, executor,
                              owner, available_at, status, attempt, started_at)
    VALUES (p_run_id, p_thread_id, p_assistant_id, v_run_metadata,
            jsonb_set(p_kwargs, '{config}', v_run_config), p_strategy, p_executor, p_owner,
            now() + make_interval(secs => p_after_seconds),
            CASE WHEN v_start THEN 'running' ELSE 'pending' END, CASE WHEN v_start THEN 1 ELSE 0 END,
            CASE WHEN v_start THEN now() END)
    RETURNING r.run_id, r.thread_id, r.assistant_id, r.status, r.metadata, r.kwargs, r.multitask_strategy,
              r.executor, r.attempt, r.available_at, r.cancel_reason, r.error, r.owner, r.created_at,
              r.updated_at, r.started_at, r.ended_at, v_inflight;
END
$$;
