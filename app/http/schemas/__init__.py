"""msgspec wire types: *In for request bodies (unknown fields refused), *Out for responses."""
