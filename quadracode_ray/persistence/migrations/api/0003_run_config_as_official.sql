-- qr_create_run (api/0002) writes a run's config and its thread's config as the official server's
-- Runs.put does (langgraph_runtime_inmem), still in one round trip:
-- * the run's metadata: assistant's < thread's < the caller's (p_metadata: the run's own, its
--   config's, a cron's, graph_id/assistant_id), and kwargs.config.metadata is that same map;
-- * kwargs.config.configurable: the thread's configurable under the caller's (which carries the
--   assistant's, the run's and run_id/thread_id/graph_id/assistant_id/user_id);
-- * a thread that is not busy takes the assistant's and the run's config (not its configurable
--   nor metadata), its configurable being the assistant's under the thread's own.
-- Same signature, so callers do not change.
CREATE OR REPLACE FUNCTION qr_create_run(
    p_run_id uuid, p_thread_id uuid, p_assistant_id uuid, p_graph_id text, p_metadata jsonb, p_kwargs jsonb,
    p_strategy text, p_executor text, p_owner text, p_after_seconds double precision, p_stateless boolean,
    p_temporary boolean, p_create_thread boolean)
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
    RETURN QUERY
    INSERT INTO qr_runs AS r (run_id, thread_id, assistant_id, metadata, kwargs, multitask_strategy, executor,
                              owner, available_at)
    VALUES (p_run_id, p_thread_id, p_assistant_id, v_run_metadata,
            jsonb_set(p_kwargs, '{config}', v_run_config), p_strategy, p_executor, p_owner,
            now() + make_interval(secs => p_after_seconds))
    RETURNING r.run_id, r.thread_id, r.assistant_id, r.status, r.metadata, r.kwargs, r.multitask_strategy,
              r.executor, r.attempt, r.available_at, r.cancel_reason, r.error, r.owner, r.created_at,
              r.updated_at, r.started_at, r.ended_at, v_inflight;
END
$$;
