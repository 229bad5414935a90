-- Leases: which instance of a role that must run once (the relay) holds the work now. A
-- holder renews its lease well before it expires; another instance takes it over once it has.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
