"""The HTTP layer (Litestar): routes, wire schemas, envelope, auth, idempotency, errors. Never SQL."""
