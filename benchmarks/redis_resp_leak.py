"""Does a pub/sub listener's memory grow per message? RESP2 against RESP3, with hiredis.

Reported for redis-py with hiredis: a RESP3 subscriber leaks per message. This
starts its own ``redis-server``, runs one subscriber per variant in a
subprocess, publishes the same messages to each, and prints the subscriber's
RSS growth per message after a warm-up. Variants: redis-py's ``PubSub`` and a
bare ``Connection`` reading pub/sub replies (what the Redis backend's listener
does), each with ``protocol=2`` and ``protocol=3``.

    python -m benchmarks.redis_resp_leak [--messages 300000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tests.redisproc import RedisProcess

CHANNEL = "leak-check"
PAYLOAD = b'{"type":"progress","percent":42,"message":"' + b"x" * 150 + b'"}'
WARM_UP = 20_000

_SUBSCRIBER = r"""
import os, sys, time, redis
url, mode = sys.argv[1], sys.argv[3]
protocol, total, warm = int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5])

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

assert redis.utils.HIREDIS_AVAILABLE
if mode == "pubsub":
    pubsub = redis.Redis.from_url(url, protocol=protocol).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("leak-check")
    def next_message():
        while True:
            m = pubsub.get_message(timeout=30)
            if m is not None:
                return m["data"]
else:
    pool = redis.ConnectionPool.from_url(url, protocol=protocol)
    conn = pool.get_connection()
    conn.send_command("SUBSCRIBE", "leak-check")
    conn.read_response(push_request=True)
    def next_message():
        reply = conn.read_response(push_request=True)
        return reply[2]
print("ready", flush=True)
seen = 0
while seen < warm:
    next_message(); seen += 1
before = rss_kib()
cpu = time.process_time()
while seen < total:
    next_message(); seen += 1
cpu = time.process_time() - cpu
after = rss_kib()
print(f"{before} {after} {cpu}", flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300_000)
    args = parser.parse_args()
    import redis

    # Unlimited output buffers: the publisher runs ahead of the subscribers.
    server = RedisProcess(
        appendonly=False, options=("--client-output-buffer-limit", "pubsub 0 0 0")
    ).start()
    try:
        client = redis.Redis.from_url(server.url)
        version = client.info()["redis_version"]
        hiredis = redis.utils.HIREDIS_AVAILABLE
        print(f"redis-server {version}, redis-py {redis.__version__}, hiredis {hiredis}")
        total = WARM_UP + args.messages
        for mode in ("pubsub", "connection"):
            for protocol in (2, 3):
                sub = subprocess.Popen(
                    [sys.executable, "-c", _SUBSCRIBER, server.url, str(protocol), mode,
                     str(total), str(WARM_UP)],
                    stdout=subprocess.PIPE, text=True, env=dict(os.environ),
                )  # fmt: skip
                assert sub.stdout is not None
                assert sub.stdout.readline().strip() == "ready"
                while client.pubsub_numsub(CHANNEL)[0][1] < 1:
                    time.sleep(0.01)
                pipe = client.pipeline(transaction=False)
                for index in range(total):
                    pipe.publish(CHANNEL, PAYLOAD)
                    if index % 1000 == 999:
                        pipe.execute()
                pipe.execute()
                fields = sub.stdout.readline().split()
                before, after, cpu = int(fields[0]), int(fields[1]), float(fields[2])
                sub.wait(30)
                per_message = (after - before) * 1024 / args.messages
                print(
                    f"{mode:10} RESP{protocol}: RSS {before} KiB -> {after} KiB over"
                    f" {args.messages} messages: {per_message:.2f} bytes/message;"
                    f" {cpu / args.messages * 1e6:.1f} us CPU/message"
                )
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
