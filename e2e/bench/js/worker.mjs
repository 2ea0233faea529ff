// The seed's stack, written the usual way: nats.js consume() + ack(), the payload parsed for the
// handler. Usage: node worker.mjs NATS_URL STREAM CONSUMER TOTAL
import { connect } from "nats";

const [url, stream, name, total] = process.argv.slice(2);
const nc = await connect({ servers: url });
const consumer = await nc.jetstream().consumers.get(stream, name);
const messages = await consumer.consume();
let handled = 0;
for await (const m of messages) {
  const event = m.json();
  if (!event.event_id) throw new Error("not a gateway event");
  m.ack();
  if (++handled >= Number(total)) break;
}
await nc.drain();
