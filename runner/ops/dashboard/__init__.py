"""The web dashboard served by ``ackflow serve`` (and ``ackflow dashboard``): runs, each run's
DAG and history, dead letters, and run control for operators. Server-rendered HTML and one
stylesheet, shipped inside the package: no CDN, no build step.

- `pages`: the HTML pages (runs, a run, dead letters) from what `Client` returns.
- `tasks`: a task's page (attempts, inputs, result or error), a map node's elements.
- `timeline`: a run's attempts over time (a Gantt chart), as inline SVG.
- `layout`, `svg`: a run's DAG, laid out in layers, as an inline SVG picture.
- `common`: the frame, links and texts the pages share.
- `fleet`: the Workers and Queues pages (runner.ops.fleet).

May import the client room (and its `render`), the compiled specs (`runner.define.spec`), the
shared leaves and the broker's contracts (`DeadLetters`); never a concrete store or broker,
never the HTTP side that serves it (tests/unit/test_layers.py enforces the first).
"""
