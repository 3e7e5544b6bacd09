-- Core tables of the system itself.

-- One row per `quadracode-ray up` (or other start of the system): who started it and when.
CREATE TABLE qr_system_starts (
    id          bigserial   PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    version     text        NOT NULL,
    hostname    text        NOT NULL,
    ray_address text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- Small durable key/value facts about the installation (its id, first start, ...).
CREATE TABLE qr_installation (
    key        text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO qr_installation (key, value) VALUES ('installation_id', to_jsonb(gen_random_uuid()::text));
