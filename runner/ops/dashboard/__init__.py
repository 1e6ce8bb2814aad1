"""The web dashboard served by ``ackflow serve`` (and ``ackflow dashboard``): runs, each run's
DAG and history, dead letters, and run control for operators. Server-rendered HTML and one
stylesheet, shipped inside the package: no CDN, no build step."""
