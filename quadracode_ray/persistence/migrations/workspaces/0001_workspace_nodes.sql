-- The Ray node that holds each workspace's container (sandbox/placement.py): the workspace's
-- actor is always placed there, and fails clearly when that node is gone.
CREATE TABLE IF NOT EXISTS qr_workspace_nodes (
    installation_id text        NOT NULL,
    workspace_id    text        NOT NULL,
    node_id         text        NOT NULL,
    node_ip         text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (installation_id, workspace_id)
);
