-- gridwatch schema 5 (SQLite): people who log in (design §8). Passwords are argon2 hashes, never plaintext.
-- role: admin | commander (bound to grid_code and its subtree) | patroller (bound to patroller_id) |
-- planner | device.
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'commander', 'patroller', 'planner', 'device')),
    grid_code     TEXT,
    patroller_id  TEXT,
    created_at    TEXT NOT NULL,
    CHECK (role <> 'commander' OR grid_code IS NOT NULL),
    CHECK (role <> 'patroller' OR patroller_id IS NOT NULL)
);
