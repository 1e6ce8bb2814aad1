"""``ackflow serve``'s HTTP side: the routes (`api`), the app assembled and served (`app`), the
request guard (`guard`), the operator login (`auth`), the pooled clients (`pool`), the
uvicorn server (`server`), and the REST API under /v1 (`rest`), its OpenAPI document
(`openapi`) and its bearer tokens (`tokens`).

May import what any operator surface may (see `runner.ops`): the client room, `runner.local`,
the shared leaves, the broker's contracts (dead letters through `DeadLetters`), and the
dashboard's pages; never a concrete store or broker (tests/unit/test_layers.py enforces it).
"""
