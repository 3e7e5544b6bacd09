-- Token and cost budgets beside the autonomy guardrails, changeable through /system/guardrails.
-- NULL is no limit. budgets_set is false on rows written before this migration: for them the
-- settings' budgets (QUADRACODE_BUDGET_*) stay in force until the budgets are first changed.
ALTER TABLE qr_guardrails
    ADD COLUMN IF NOT EXISTS budgets_set            boolean          NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS budget_thread_tokens   bigint           CHECK (budget_thread_tokens >= 1),
    ADD COLUMN IF NOT EXISTS budget_thread_cost_usd double precision CHECK (budget_thread_cost_usd > 0),
    ADD COLUMN IF NOT EXISTS budget_task_tokens     bigint           CHECK (budget_task_tokens >= 1),
    ADD COLUMN IF NOT EXISTS budget_task_cost_usd   double precision CHECK (budget_task_cost_usd > 0);
