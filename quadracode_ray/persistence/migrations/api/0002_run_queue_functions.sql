-- The run queue's three transactions as server-side functions: creating, claiming and finishing a
-- run each take one round trip instead of 6-9 statements (a run used ~35 statements end to end).
-- The rules are those of actors/run_executor_queue.py: lock the thread row first, then run rows;
-- a thread with a pending or running run is 'busy', otherwise the outcome of its last run.

-- Queue a run (serve_app/runs/service.py create_run). Errors: 'qr:not_found' (no such thread,
-- or another owner's, and p_create_thread is false), 'qr:busy' (reject strategy, thread busy).
-- Returns the new run row and the thread's runs that were in flight before it.
CREATE FUNCTION qr_create_run(
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
    v_thread_owner text;
    v_found boolean;
    v_inflight jsonb;
BEGIN
    IF p_stateless THEN
        INSERT INTO qr_threads (thread_id, metadata, owner, temporary)
        VALUES (p_thread_id, jsonb_build_object('graph_id', p_graph_id, 'assistant_id', p_assistant_id),
                p_owner, p_temporary)
        ON CONFLICT (thread_id) DO NOTHING;
    END IF;
    SELECT t.metadata, t.owner INTO v_thread_metadata, v_thread_owner
    FROM qr_threads t WHERE t.thread_id = p_thread_id FOR UPDATE;
    v_found := FOUND AND (p_owner IS NULL OR v_thread_owner IS NOT DISTINCT FROM p_owner);
    IF NOT v_found THEN
        IF NOT p_create_thread THEN
            RAISE EXCEPTION 'qr:not_found';
        END IF;
        INSERT INTO qr_threads (thread_id, metadata, owner, temporary)
        VALUES (p_thread_id, '{}'::jsonb, p_owner, false) ON CONFLICT (thread_id) DO NOTHING;
        SELECT t.metadata INTO v_thread_metadata FROM qr_threads t WHERE t.thread_id = p_thread_id FOR UPDATE;
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object('run_id', r.run_id, 'executor', r.executor)), '[]'::jsonb)
    INTO v_inflight FROM qr_runs r WHERE r.thread_id = p_thread_id AND r.status IN ('pending', 'running');
    IF jsonb_array_length(v_inflight) > 0 AND p_strategy = 'reject' THEN
        RAISE EXCEPTION 'qr:busy';
    END IF;
    UPDATE qr_threads t
    SET metadata = t.metadata || jsonb_build_object('graph_id', p_graph_id, 'assistant_id', p_assistant_id),
        status = 'busy', updated_at = now()
    WHERE t.thread_id = p_thread_id;
    RETURN QUERY
    INSERT INTO qr_runs AS r (run_id, thread_id, assistant_id, metadata, kwargs, multitask_strategy, executor,
                              owner, available_at)
    VALUES (p_run_id, p_thread_id, p_assistant_id, coalesce(v_thread_metadata, '{}'::jsonb) || p_metadata,
            p_kwargs, p_strategy, p_executor, p_owner, now() + make_interval(secs => p_after_seconds))
    RETURNING r.run_id, r.thread_id, r.assistant_id, r.status, r.metadata, r.kwargs, r.multitask_strategy,
              r.executor, r.attempt, r.available_at, r.cancel_reason, r.error, r.owner, r.created_at,
              r.updated_at, r.started_at, r.ended_at, v_inflight;
END
$$;

-- Move a pending run to running if it is due, first in line, and its thread is free
-- (actors/run_executor_queue.py claim). Returns the run row when claimed; the pending row when
-- it is not due yet (its available_at says when); nothing otherwise. A claim lost in an OS crash
-- leaves the run pending and it is simply claimed again, so it commits without the WAL flush.
CREATE FUNCTION qr_claim_run(p_run_id uuid, p_executor text)
RETURNS SETOF qr_runs
LANGUAGE plpgsql AS $$
DECLARE
    v_thread_id uuid;
    v_run qr_runs%ROWTYPE;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT r.thread_id INTO v_thread_id FROM qr_runs r WHERE r.run_id = p_run_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM qr_threads t WHERE t.thread_id = v_thread_id FOR UPDATE;
    SELECT * INTO v_run FROM qr_runs r WHERE r.run_id = p_run_id FOR UPDATE;
    IF NOT FOUND OR v_run.status <> 'pending' THEN
        RETURN;
    END IF;
    IF v_run.available_at > now() THEN
        RETURN NEXT v_run;
        RETURN;
    END IF;
    PERFORM 1 FROM qr_runs r WHERE r.thread_id = v_thread_id AND r.run_id <> p_run_id AND
        (r.status = 'running' OR (r.status = 'pending' AND (r.created_at, r.run_id) < (v_run.created_at, v_run.run_id)))
        LIMIT 1;
    IF FOUND THEN
        RETURN;  -- started by whoever finishes the run ahead of it
    END IF;
    UPDATE qr_threads t SET status = 'busy', updated_at = now() WHERE t.thread_id = v_thread_id AND t.status <> 'busy';
    RETURN QUERY
    UPDATE qr_runs r SET status = 'running', executor = p_executor, attempt = r.attempt + 1, started_at = now(),
        updated_at = now()
    WHERE r.run_id = p_run_id RETURNING r.*;
END
$$;

-- Record a run's end and its thread's new state (actors/run_executor_queue.py finish); returns
-- the thread's next pending run, if any.
CREATE FUNCTION qr_finish_run(
    p_run_id uuid, p_status text, p_thread_outcome text, p_error jsonb, p_values jsonb, p_interrupts jsonb,
    p_write_state boolean, p_delete_run boolean, p_delete_thread boolean)
RETURNS TABLE (next_run_id uuid, next_executor text)
LANGUAGE plpgsql AS $$
DECLARE
    v_thread_id uuid;
    v_active boolean;
BEGIN
    SELECT r.thread_id INTO v_thread_id FROM qr_runs r WHERE r.run_id = p_run_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM qr_threads t WHERE t.thread_id = v_thread_id FOR UPDATE;
    IF p_delete_thread THEN
        DELETE FROM qr_threads t WHERE t.thread_id = v_thread_id;
        RETURN;
    END IF;
    IF p_delete_run THEN
        DELETE FROM qr_runs r WHERE r.run_id = p_run_id;
    ELSE
        UPDATE qr_runs r SET status = p_status, error = p_error, ended_at = now(), updated_at = now()
        WHERE r.run_id = p_run_id AND r.status IN ('pending', 'running');
    END IF;
    v_active := EXISTS (SELECT 1 FROM qr_runs r WHERE r.thread_id = v_thread_id
                        AND r.status IN ('pending', 'running'));
    IF p_write_state THEN
        UPDATE qr_threads t SET "values" = p_values, interrupts = coalesce(p_interrupts, '{}'::jsonb),
            error = p_error, state_updated_at = now(),
            status = CASE WHEN v_active THEN 'busy' ELSE p_thread_outcome END, updated_at = now()
        WHERE t.thread_id = v_thread_id;
    ELSE
        UPDATE qr_threads t SET status = CASE WHEN v_active THEN 'busy' ELSE p_thread_outcome END,
            updated_at = now()
        WHERE t.thread_id = v_thread_id;
    END IF;
    IF v_active THEN
        RETURN QUERY SELECT r.run_id, r.executor FROM qr_runs r
        WHERE r.thread_id = v_thread_id AND r.status = 'pending' ORDER BY r.created_at, r.run_id LIMIT 1;
    END IF;
END
$$;
