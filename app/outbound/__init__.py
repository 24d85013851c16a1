"""Outbound HTTP: the only place Agora sends requests to addresses that callers chose (webhook deliveries)."""
