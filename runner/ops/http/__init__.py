"""``ackflow serve``'s HTTP side: the Starlette app (`api`), the request guard (`guard`), the
operator login (`auth`), the pooled clients (`pool`) and the uvicorn server (`server`)."""
