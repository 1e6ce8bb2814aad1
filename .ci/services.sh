#!/usr/bin/env bash
# Start RabbitMQ and Redis on 127.0.0.1 if they are not answering (Debian packages).
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
rabbit_up() { timeout 20 rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 \
              || (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi
if ! command -v rabbitmq-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
fi

if ! redis_up; then
  echo "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! rabbit_up; then
  echo "starting rabbitmq-server"
  rabbitmq-server -detached || true
fi

for _ in $(seq 1 90); do
  if redis_up && rabbit_up; then
    # the port opens before the broker takes logins: wait for the app itself
    if timeout 20 rabbitmqctl await_startup >/dev/null 2>&1; then
      echo "RabbitMQ and Redis are up"
      exit 0
    fi
  fi
  sleep 2
done
echo "RabbitMQ or Redis did not come up" >&2
exit 1
