-- The operator API: who owns a workspace made over HTTP, and the guardrails an operator set.

-- A workspace created through POST /workspaces; owner NULL when auth was off. Workspaces made
-- by the fabric itself (the ``default`` one) have no row: only admins (or everyone, with auth
-- off) see them.
CREATE TABLE qr_api_workspaces (
    workspace_id text        PRIMARY KEY,
    owner        text,
    spec         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qr_api_workspaces_owner ON qr_api_workspaces (owner, created_at);

-- The autonomy guardrails set with PATCH /system/guardrails (one row per installation, keyed
-- by its actor name prefix); absent: the settings' QUADRACODE_AUTONOMY_* values apply.
CREATE TABLE qr_guardrails (
    installation          text             PRIMARY KEY,
    max_iterations        integer          NOT NULL CHECK (max_iterations >= 1),
    max_hours             double precision NOT NULL CHECK (max_hours > 0),
    max_agents_per_thread integer          NOT NULL CHECK (max_agents_per_thread >= 0),
    updated_by            text,
    updated_at            timestamptz      NOT NULL DEFAULT now()
);
