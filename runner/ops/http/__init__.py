"""``ackflow serve``'s HTTP side: the routes (`api`), the app assembled and served (`app`), the request guard (`guard`), the
operator login (`auth`), the pooled clients (`pool`) and the uvicorn server (`server`)."""
