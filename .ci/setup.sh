#!/usr/bin/env bash
# What `make test` needs besides .venv, installed or started only when missing (idempotent;
# a second run with everything present takes about a second):
#   - Debian's headless Chromium for the dashboard's browser tests (Playwright never downloads
#     one): `apt-get install chromium chromium-driver` when /usr/bin/chromium is missing and
#     apt is usable (root). When it cannot be installed this says why and carries on: the
#     browser tests then skip with that reason, or fail under CI=true.
#   - Debian's prometheus package for promtool and the Prometheus server, which check the
#     shipped alert rules and run the Grafana dashboard's queries (tests/unit/
#     test_prometheus_files.py, tests/e2e/test_prometheus.py): installed when promtool is
#     missing and apt is usable; else those tests skip, or fail under CI=true.
#   - RabbitMQ and Redis on 127.0.0.1 when they do not answer (.ci/services.sh), unless
#     ACKFLOW_TEST_BROKER_URL / ACKFLOW_TEST_REDIS_URL name other ones. If they cannot be
#     started this says so and carries on: the service tests skip, or fail under CI=true.
set -uo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${ACKFLOW_CHROMIUM:-/usr/bin/chromium}"  # tests of this script point it elsewhere (the browser tests use /usr/bin/chromium)
PROMTOOL="${ACKFLOW_PROMTOOL:-promtool}"  # tests of this script point it elsewhere
PY="${PY:-.venv/bin/python}"

say() { echo "setup: $*" >&2; }

# --- the browser -------------------------------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
  if ! command -v apt-get >/dev/null; then
    say "$CHROMIUM is missing and there is no apt-get to install it: the browser tests will skip (fail under CI=true)"
  elif [ "$(id -u)" != 0 ]; then
    say "$CHROMIUM is missing and installing it needs root (sudo apt-get install chromium chromium-driver): the browser tests will skip (fail under CI=true)"
  else
    say "installing chromium and chromium-driver (Debian packages) for the browser tests"
    if apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
      && [ -x "$CHROMIUM" ]; then
      say "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    else
      say "could not install chromium (apt-get failed, see above): the browser tests will skip (fail under CI=true)"
    fi
  fi
fi

# --- Prometheus (promtool and the server) ------------------------------------------------
if ! command -v "$PROMTOOL" >/dev/null; then
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    say "promtool is missing (apt-get install prometheus, as root): the Prometheus tests will skip (fail under CI=true)"
  elif apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
    say "prometheus installed: $(promtool --version 2>&1 | head -1)"
  else
    say "could not install prometheus (apt-get failed, see above): the Prometheus tests will skip (fail under CI=true)"
  fi
fi

# --- RabbitMQ and Redis ------------------------------------------------------------------
services_answer() {  # a real AMQP login and a Redis PING, as the tests will do
  [ -x "$PY" ] && "$PY" - <<'EOF' 2>/dev/null
import os, sys
from tests.services import find_without_docker
found, problems = find_without_docker(dict(os.environ))
sys.exit(0 if found else 1)
EOF
}

if [ -n "${ACKFLOW_TEST_BROKER_URL:-}${ACKFLOW_TEST_REDIS_URL:-}" ]; then
  : # the services are elsewhere: the tests find them (or say why not)
elif ! services_answer; then
  if ! bash .ci/services.sh; then
    say "RabbitMQ/Redis could not be started here: the service tests will skip (fail under CI=true)"
  fi
fi
exit 0
