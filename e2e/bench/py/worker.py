"""A worker on nats-py, written the usual way: a pull subscription, fetch in batches, ack each.

Usage: python worker.py NATS_URL STREAM CONSUMER TOTAL
"""
import asyncio
import json
import sys

import nats
from nats.errors import TimeoutError


async def main(url: str, stream: str, consumer: str, total: int) -> None:
    nc = await nats.connect(url)
    subscription = await nc.jetstream().pull_subscribe_bind(durable=consumer, stream=stream)
    handled = 0
    while handled < total:
        try:
            messages = await subscription.fetch(batch=256, timeout=5)
        except TimeoutError:
            continue
        for message in messages:
            event = json.loads(message.data)
            if "event_id" not in event:
                raise ValueError("not a gateway event")
            await message.ack()
            handled += 1
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
