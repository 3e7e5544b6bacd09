-- Workspace snapshots in Postgres (sandbox/snapshot_rows.py), so every node of a cluster reads
-- them without a shared folder: a workspace whose node is gone is restored on another from here.
-- The tar is split into chunks (one row each, streamed in and out, never held whole); the
-- snapshot's row and its chunks are written in one transaction, so a half snapshot is never seen.
CREATE TABLE IF NOT EXISTS qr_workspace_snapshots (
    installation_id text        NOT NULL,
    workspace_id    text        NOT NULL,
    snapshot_id     text        NOT NULL,
    info            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (installation_id, workspace_id, snapshot_id)
);

CREATE TABLE IF NOT EXISTS qr_workspace_snapshot_chunks (
    installation_id text    NOT NULL,
    workspace_id    text    NOT NULL,
    snapshot_id     text    NOT NULL,
    seq             integer NOT NULL,
    data            bytea   NOT NULL,
    PRIMARY KEY (installation_id, workspace_id, snapshot_id, seq),
    FOREIGN KEY (installation_id, workspace_id, snapshot_id)
        REFERENCES qr_workspace_snapshots (installation_id, workspace_id, snapshot_id) ON DELETE CASCADE
);
-- A tar is mostly already-compressed or binary data: store chunks as they are (no pglz pass).
ALTER TABLE qr_workspace_snapshot_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
