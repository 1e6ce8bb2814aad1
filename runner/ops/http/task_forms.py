"""A task's page, ``GET /runs/<id>/tasks/<task>`` (`runner.ops.dashboard.tasks`; a map
element's too, ``<task>`` being ``node[i]``), and the dashboard's "approve / fail" of a waiting task (a lazy task), for a logged-in operator:
``POST /runs/<id>/tasks/<task>/complete`` (form field ``result``, JSON) or ``.../fail``
(``error``), from the dashboard's own origin, like every other operator form. The server
mints the task's completion token with ``ACKFLOW_SECRET``; the answer is a redirect to the
run's page saying what happened."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runner.client import Client
from runner.errors import AckflowError, RunNotFound, WaitTimeout
from runner.ops.dashboard import pages, tasks
from runner.ops.http.api import Api


class TaskForms:
    def __init__(self, api: Api) -> None:
        self.api = api

    def routes(self) -> list[Route]:
        return [
            Route("/runs/{run_id}/tasks/{task}", self.page, methods=["GET"]),
            Route("/runs/{run_id}/tasks/{task}/{outcome}", self.finish, methods=["POST"]),
        ]

    async def page(self, request: Request) -> Response:
        api = self.api
        run_id, task = request.path_params["run_id"], request.path_params["task"]  # percent-decoded
        query = dict(request.query_params)
        operator = api._operator(request)

        def render(client: Client) -> Response:
            try:
                body, done = tasks.task_page(client, run_id, task, query, operator)
            except RunNotFound:
                return api._page(request, 404, pages.not_found(run_id), "No such run")
            except tasks.TaskNotFound:
                return api._page(request, 404, tasks.no_task(run_id, task), "No such task")
            return api._page(request, 200, body, f"{task} · run {run_id}", refresh=not done)

        return await api._dashboard(request, render)

    async def finish(self, request: Request) -> Response:
        api = self.api
        form = await api._form(request)  # refuses another site's POST (CSRF)
        if isinstance(form, Response):
            return form
        outcome = request.path_params["outcome"]
        if outcome not in ("complete", "fail"):
            return api._page(request, 404, "<h1>Not found</h1>", "Not found")
        if not api._operator(request):
            return api._page(
                request, 403, "<h1>Operators only</h1><p>Log in with the operator token.</p>", "Forbidden"
            )
        run_id, task = request.path_params["run_id"], request.path_params["task"]
        back = f"/runs/{quote(run_id, safe=':')}"

        def said(msg: str) -> Response:
            return api._redirect(f"{back}?{urlencode({'msg': msg})}")

        if not api.completions:
            return said("refused: this server completes no tasks (ACKFLOW_SECRET is not set)")
        result = None
        if outcome == "complete":
            try:
                result = json.loads(form.get("result") or "null")
            except (ValueError, RecursionError) as e:
                return said(f"refused: the result is not JSON ({str(e)[:200]})")
        elif not form.get("error", "").strip():
            return said("refused: a failure needs a message")

        def act(client: Client) -> Response:
            try:
                token = client.token_for(run_id, task)
                if outcome == "complete":
                    status = client.complete(token, result, wait_s=10.0)
                else:
                    status = client.fail(token, form["error"], wait_s=10.0)
            except WaitTimeout:
                status = "accepted"
            except (AckflowError, ValueError) as e:
                return said(f"refused: {e}")
            return said(f"task {task}: {status}")

        return await api._dashboard(request, act)
