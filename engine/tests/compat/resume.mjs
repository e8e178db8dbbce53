// The README's resuming browser client, run in Node: @stomp/stompjs 7 remembers the last
// `x-offset` per channel and, after its socket drops, resubscribes with `x-since`. It must
// end with every message of the channel exactly once, in order, and a RECEIPT saying
// `x-recovered:true`.
//
//   node resume.mjs ws://127.0.0.1:PORT/ws
//
// Prints TAP-style lines; exits 1 on failure, and stops itself after 30 s.

import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  console.error('usage: node resume.mjs ws://HOST:PORT/ws');
  process.exit(2);
}
const CHANNEL = 'resume-lobby';
const deadline = setTimeout(() => {
  console.log('not ok - timed out after 30 s');
  process.exit(1);
}, 30_000);

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}`);
  if (!ok) failures += 1;
}

function stompClient(extra) {
  return new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
    debug: () => {},
    onStompError: (frame) => {
      console.log(`not ok - ERROR frame: ${frame.headers.message ?? ''}`);
      process.exit(1);
    },
    ...extra,
  });
}

// The client of the README, with hooks for the test.
const last = new Map(); // channel -> the last x-offset seen
const received = [];
const receipts = [];
let connects = 0;
let onReady = () => {};
let onClosed = () => {};
const reader = stompClient({ reconnectDelay: 200 });
reader.onConnect = () => {
  connects += 1;
  const since = last.get(CHANNEL);
  const headers = since ? { 'x-since': since, receipt: `resume-${connects}` } : { 'x-history': '50', receipt: 'join' };
  reader.watchForReceipt(headers.receipt, (receipt) => {
    receipts.push(receipt.headers);
    onReady();
  });
  reader.subscribe(`/sub/chat/${CHANNEL}`, (message) => {
    last.set(CHANNEL, message.headers['x-offset']);
    received.push(JSON.parse(message.body).message);
  }, headers);
};
reader.onWebSocketClose = () => onClosed();

const writer = stompClient({ reconnectDelay: 0 });
const writerReady = new Promise((resolve) => { writer.onConnect = resolve; });

const ready = () => new Promise((resolve) => { onReady = resolve; });
const closed = () => new Promise((resolve) => { onClosed = resolve; });
const until = async (what, done) => {
  while (!done()) await new Promise((r) => setTimeout(r, 10));
  return what;
};
const publish = (from, to) => {
  for (let i = from; i < to; i += 1) {
    writer.publish({
      destination: '/pub/chat',
      body: JSON.stringify({ channel: CHANNEL, sender: 'writer@letters.test', message: `m${i}` }),
    });
  }
};
const names = (from, to) => Array.from({ length: to - from }, (_, k) => `m${from + k}`);

let joined = ready();
reader.activate();
writer.activate();
await writerReady;
await joined;
publish(0, 10);
await until('first ten', () => received.length >= 10);

// The socket drops (as when a node dies); nothing is published to it meanwhile.
let back = ready();
const gone = closed();
reader.forceDisconnect();
await gone;
publish(10, 20);
await back;
await until('the missed ten', () => received.length >= 20);
publish(20, 25);
await until('live again', () => received.length >= 25);
await new Promise((r) => setTimeout(r, 300)); // anything doubled would arrive by now

check(connects === 2, `the client connected twice (${connects})`);
check(receipts.length === 2 && receipts[1]['x-recovered'] === 'true',
  `the resuming RECEIPT says x-recovered:true (${JSON.stringify(receipts[1] ?? {})})`);
check(JSON.stringify(received) === JSON.stringify(names(0, 25)),
  `every message once, in order (${received.length} received)`);
check(/^\S+$/.test(last.get(CHANNEL) ?? ''), 'messages carry x-offset');

clearTimeout(deadline);
await reader.deactivate();
await writer.deactivate();
console.log(`resume: ${failures === 0 ? 'passed' : `${failures} failed`}`);
process.exit(failures === 0 ? 0 : 1);
