"""Background workers: the webhook delivery worker (in-process under `agora serve`, or `agora worker`)."""
