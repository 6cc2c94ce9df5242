"""A Kafka consumer in its own process that reports when each progress event arrives.

`python -m benchmarks.probe BOOTSTRAP TOPIC` reads TOPIC from its end and
prints one JSON line per record: its key, `ce_time` (when the service built
the event), the record's Kafka timestamp (when the producer queued it, in
whole milliseconds) and when this process received it, all as Unix seconds.
It prints `ready` once it is positioned, and stops on SIGTERM or when stdin
closes. A separate process, because the benchmark client is busy sending
upload bodies: its event loop would delay receipt and inflate the figures. A
record without `ce_time` is skipped; a broker that cannot be reached makes it
exit non-zero.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import datetime

from aiokafka import AIOKafkaConsumer


def ce_time_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def probe(bootstrap: str, topic: str, fetch_max_wait_ms: int) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    try:
        # Without a group every partition is assigned once the metadata is in;
        # aiokafka signals that to group members only, so it is polled for.
        async with asyncio.timeout(30):
            while not consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolves "latest": only what comes from now on
        print("ready", flush=True)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            received = time.time()
            lines = []
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    if "ce_time" not in headers:
                        continue
                    lines.append(
                        json.dumps(
                            {
                                "key": record.key.decode() if record.key else None,
                                "type": headers.get("ce_type"),
                                "ce_time": ce_time_seconds(headers["ce_time"]),
                                "kafka_time": record.timestamp / 1000,
                                "received": received,
                            }
                        )
                    )
            if lines:
                print("\n".join(lines), flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    wait_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    asyncio.run(probe(bootstrap, topic, wait_ms))


if __name__ == "__main__":
    main()
