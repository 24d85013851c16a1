"""One controller per resource; each handler parses, calls one service function, and converts."""
