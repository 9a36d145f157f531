-- gridwatch schema 5 (PostgreSQL): people who log in (design §8). Passwords are argon2 hashes, never plaintext.
-- role: admin | commander (bound to grid_code and its subtree) | patroller (bound to patroller_id) |
-- planner | device.
CREATE TABLE users (
    username      text PRIMARY KEY,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('admin', 'commander', 'patroller', 'planner', 'device')),
    grid_code     text,
    patroller_id  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'commander' OR grid_code IS NOT NULL),
    CHECK (role <> 'patroller' OR patroller_id IS NOT NULL)
);
