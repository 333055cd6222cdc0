"""A pub/sub channel per session, or a few shared channels? Measured on a real redis-server.

Three questions, each printed with its figures:

1. What a subscribed channel costs Redis: memory per channel with 100,000
   sessions subscribed by one connection, and how fast one connection
   subscribes and unsubscribes (the churn of streams opening and closing).
2. What each design costs to deliver: ``--workers`` listener processes, each
   serving its own share of ``--sessions`` sessions; the publisher sends
   ``--events`` events to random sessions. With a channel per session each
   listener receives only its own sessions' events; with ``--shards`` shared
   channels every listener receives every event and drops the others'. Reported:
   listener CPU per event it needed, and Redis CPU per publish.
3. The latency a channel per session adds to a new stream: one SUBSCRIBE round
   trip, median over 2,000 subscriptions.

    python -m benchmarks.redis_channels [--workers 4] [--sessions 10000] [--events 200000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import zlib

from tests.redisproc import RedisProcess

_LISTENER = r"""
import sys, time, redis
url, mode, worker, workers, sessions, shards = sys.argv[1:7]
worker, workers, sessions, shards = int(worker), int(workers), int(sessions), int(shards)
mine = {f"s{i}".encode() for i in range(sessions) if i % workers == worker}
pool = redis.ConnectionPool.from_url(url, protocol=2)
conn = pool.get_connection()
if mode == "session":
    channels = [b"ch:{" + s + b"}" for s in mine]
else:
    channels = [f"shard:{i}".encode() for i in range(shards)]
channels.append(b"control")
for start in range(0, len(channels), 1000):
    batch = channels[start:start + 1000]
    conn.send_command("SUBSCRIBE", *batch)
    for _ in batch:
        conn.read_response()
print("ready", flush=True)
useful = received = 0
cpu = time.process_time()
while True:
    kind, channel, data = conn.read_response()
    if channel == b"control":
        break
    received += 1
    session, _, rest = data.partition(b"\n")
    if session in mine:
        prev, event_id, type_, json_text = rest.split(b"\n", 3)
        json_text.decode()
        useful += 1
cpu = time.process_time() - cpu
print(f"{useful} {received} {cpu}", flush=True)
"""


def _shard(session: bytes, shards: int) -> int:
    return zlib.crc32(session) % shards


def _redis_cpu(client: object) -> float:
    info = client.info("cpu")  # type: ignore[attr-defined]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def channel_cost(client: object, url: str) -> None:
    import redis

    conn = redis.ConnectionPool.from_url(url, protocol=2).get_connection()
    count = 100_000
    before = client.info("memory")["used_memory"]  # type: ignore[attr-defined]
    started = time.perf_counter()
    for start in range(0, count, 1000):
        batch = [f"sse:{{s{i}}}" for i in range(start, start + 1000)]
        conn.send_command("SUBSCRIBE", *batch)
        for _ in batch:
            conn.read_response()
    subscribe_seconds = time.perf_counter() - started
    after = client.info("memory")["used_memory"]  # type: ignore[attr-defined]
    print(
        f"1. {count} channels subscribed by one connection: Redis memory"
        f" {(after - before) / count:.0f} bytes/channel;"
        f" subscribed in batches of 1000 at {count / subscribe_seconds:,.0f} channels/s"
    )
    conn.disconnect()
    conn.connect()
    rounds = 5000
    started = time.perf_counter()
    for index in range(rounds):
        channel = f"sse:{{c{index}}}"
        conn.send_command("SUBSCRIBE", channel)
        conn.read_response()
        conn.send_command("UNSUBSCRIBE", channel)
        conn.read_response()
    churn = time.perf_counter() - started
    print(
        f"   one at a time, SUBSCRIBE + UNSUBSCRIBE with their replies:"
        f" {rounds / churn:,.0f} pairs/s ({churn / rounds * 1e6:.0f} us a pair)"
    )
    conn.disconnect()


def delivery_cost(client: object, url: str, args: argparse.Namespace) -> None:
    sessions = [f"s{i}".encode() for i in range(args.sessions)]
    rng = random.Random(1)
    targets = [rng.choice(sessions) for _ in range(args.events)]
    payload = b'{"type":"progress","percent":42,"message":"' + b"x" * 100 + b'"}'
    for mode in ("session", "shared"):
        listeners = []
        for worker in range(args.workers):
            process = subprocess.Popen(
                [sys.executable, "-c", _LISTENER, url, mode, str(worker), str(args.workers),
                 str(args.sessions), str(args.shards)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            listeners.append(process)
        for process in listeners:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        cpu_before = _redis_cpu(client)
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
        for index, session in enumerate(targets):
            channel = (
                b"ch:{" + session + b"}"
                if mode == "session"
                else f"shard:{_shard(session, args.shards)}".encode()
            )
            message = b"%s\n1-%d\n1-%d\nprogress\n%s" % (session, index, index + 1, payload)
            pipe.publish(channel, message)
            if index % 500 == 499:
                pipe.execute()
        pipe.execute()
        client.publish("control", b"end")  # type: ignore[attr-defined]
        results = []
        for process in listeners:
            assert process.stdout is not None
            useful, received, cpu = process.stdout.readline().split()
            results.append((int(useful), int(received), float(cpu)))
            process.wait(30)
        publish_seconds = time.perf_counter() - started
        redis_cpu = _redis_cpu(client) - cpu_before
        useful = sum(r[0] for r in results)
        received = sum(r[1] for r in results)
        cpu = sum(r[2] for r in results)
        label = "a channel per session" if mode == "session" else f"{args.shards} shared channels"
        print(
            f"2. {label:22}: {args.workers} listeners received {received:,} messages for"
            f" {useful:,} useful events: listener CPU {cpu / useful * 1e6:.2f} us per useful"
            f" event; Redis CPU {redis_cpu / args.events * 1e6:.2f} us per publish;"
            f" {args.events / publish_seconds:,.0f} publishes/s"
        )


def subscribe_latency(url: str) -> None:
    import redis

    conn = redis.ConnectionPool.from_url(url, protocol=2).get_connection()
    samples = []
    for index in range(2000):
        started = time.perf_counter()
        conn.send_command("SUBSCRIBE", f"lat:{{{index}}}")
        conn.read_response()
        samples.append(time.perf_counter() - started)
    samples.sort()
    median, p99 = statistics.median(samples), samples[int(len(samples) * 0.99)]
    print(
        f"3. SUBSCRIBE round trip before a new stream reads history: median"
        f" {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"
    )
    conn.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=16)
    args = parser.parse_args()
    import redis

    server = RedisProcess(
        appendonly=False, options=("--client-output-buffer-limit", "pubsub 0 0 0")
    ).start()
    try:
        client = redis.Redis.from_url(server.url)
        print(f"redis-server {client.info()['redis_version']}, redis-py {redis.__version__}")
        channel_cost(client, server.url)
        delivery_cost(client, server.url, args)
        subscribe_latency(server.url)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
