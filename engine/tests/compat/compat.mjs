// Client compatibility check: the JavaScript STOMP clients that the original
// Spring chat served must work against chat-engine unchanged.
//
//   node compat.mjs [--cluster] [--nodes N] [--timeout-ms MS] [--metrics URL]... URL_BASE
//
// URL_BASE is the SockJS endpoint, e.g. http://127.0.0.1:8080/letters-chat-server.
// Single-node mode (default) checks
//   (a) @stomp/stompjs 7 over raw WebSocket (URL_BASE/websocket and /ws, `ws` package),
//   (b) sockjs-client 1.6 + classic stompjs 2.3.3, used like the original React app,
//       and the cross-origin /info request that a browser makes first,
//   (c) messages crossing between the two kinds of client,
//   (d) sockjs-client forced to each HTTP transport (xhr-streaming, xhr-polling,
//       eventsource) chatting with the others, large frames and `%` included.
// --cluster connects through a load balancer until clients sit on N nodes (the
// CONNECTED `server` header names the node), adds one client per HTTP transport, and
// checks that every message reaches every subscriber on every node, once and in each
// sender's order.
// That the HTTP clients really used their transport is checked twice: sockjs-client's
// own `transport` property, and the engines' request counters by transport (scraped
// from each --metrics URL, default URL_BASE's origin + /metrics, before and after).
// Prints `ok - ...` / `not ok - ...` per check; exits 0 only when all pass.

import http from 'node:http';
import https from 'node:https';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import SockJS from 'sockjs-client';
import Stomp from 'stompjs';

const STOMP_SUBPROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const CHUNK_BYTES = 16 * 1024;
const BIG_MESSAGE_BYTES = 40 * 1024;
const PROBE_INTERVAL_MS = 250;
// sockjs-client's names of the HTTP transports, and the engine's metric label of each.
const HTTP_TRANSPORTS = [
  ['xhr-streaming', 'xhr_streaming'],
  ['xhr-polling', 'xhr'],
  ['eventsource', 'eventsource'],
];

const opts = parseArgs(process.argv.slice(2));
const nonce = `${process.pid}-${Date.now().toString(36)}`;
const deadline = Date.now() + opts.timeoutMs;
const results = [];

// ---------------------------------------------------------------- clients

/** A chat client of either kind; collects what its subscription receives. */
class Peer {
  constructor(name, kind) {
    this.name = name;
    this.kind = kind; // 'raw' (@stomp/stompjs 7) or 'sockjs' (classic stompjs)
    this.connected = null; // headers of the CONNECTED frame
    this.subprotocol = null;
    this.probesFrom = new Set();
    this.messages = []; // { headers, body, json } of non-probe MESSAGE frames
    this.problems = [];
    this.subId = null;
    this.closing = false;
  }

  /** The node named by the CONNECTED `server` header, or '?' when absent. */
  node() {
    const m = /node=(\S+)/.exec(this.connected?.server ?? '');
    return m ? m[1] : '?';
  }

  onMessage(headers, body) {
    let json = null;
    try {
      json = JSON.parse(body);
    } catch {
      this.problems.push(`MESSAGE body is not JSON: ${short(body)}`);
      return;
    }
    if (typeof json?.sender === 'string' && json.sender.startsWith('probe:')) {
      if (json.message === nonce) this.probesFrom.add(json.sender.slice(6));
      return;
    }
    this.messages.push({ headers, body, json });
  }

  fail(why) {
    if (!this.closing) this.problems.push(why);
  }
}

/** @stomp/stompjs 7 over a raw WebSocket from the `ws` package. */
class RawPeer extends Peer {
  constructor(name, wsUrl) {
    super(name, 'raw');
    this.wsUrl = wsUrl;
  }

  connect() {
    return withDeadline(`${this.name}: CONNECTED`, new Promise((resolve, reject) => {
      this.client = new Client({
        webSocketFactory: () => {
          const ws = new WebSocket(this.wsUrl, STOMP_SUBPROTOCOLS);
          ws.on('open', () => { this.subprotocol = ws.protocol; });
          return ws;
        },
        reconnectDelay: 0,
        // What stompjs does for Spring brokers: frames over 16 KiB go out as
        // several WebSocket messages, which the server must join again.
        splitLargeFrames: true,
        maxWebSocketChunkSize: CHUNK_BYTES,
        debug: () => {},
        onConnect: (frame) => {
          this.connected = frame.headers;
          resolve(this);
        },
        onStompError: (frame) => {
          this.fail(`ERROR frame: ${frame.headers.message ?? ''} ${short(frame.body)}`);
          reject(new Error(`${this.name}: ERROR frame ${frame.headers.message ?? ''}`));
        },
        onWebSocketClose: (evt) => {
          this.fail(`socket closed (${evt.code} ${evt.reason ?? ''})`);
          reject(new Error(`${this.name}: socket closed (${evt.code}) before CONNECTED`));
        },
        onWebSocketError: (evt) => {
          this.fail(`socket error: ${evt?.message ?? evt}`);
          reject(new Error(`${this.name}: socket error ${evt?.message ?? ''}`));
        },
      });
      this.client.activate();
    }));
  }

  subscribe(destination) {
    const sub = this.client.subscribe(destination, (msg) => this.onMessage(msg.headers, msg.body));
    this.subId = sub.id;
  }

  send(body) {
    this.client.publish({ destination: '/pub/chat', body: JSON.stringify(body) });
  }

  sendRaw(text) {
    this.client.publish({ destination: '/pub/chat', body: text });
  }

  close() {
    this.closing = true;
    return this.client?.deactivate({ force: true });
  }
}

/**
 * sockjs-client 1.6 + stompjs 2.3.3, called exactly as the original React client did;
 * with `transports`, limited to those (sockjs-client's `transports` option).
 */
class SockJsPeer extends Peer {
  constructor(name, base, transports = null) {
    super(name, 'sockjs');
    this.base = base;
    this.transports = transports;
    this.transport = null; // the one sockjs-client ended up using
  }

  connect() {
    return withDeadline(`${this.name}: CONNECTED`, new Promise((resolve, reject) => {
      const sock = this.transports ? new SockJS(this.base, null, { transports: this.transports }) : new SockJS(this.base);
      this.client = Stomp.over(sock);
      this.client.debug = null;
      this.client.connect({}, (frame) => {
        this.connected = frame.headers;
        this.transport = sock.transport;
        resolve(this);
      }, (error) => {
        const why = typeof error === 'string' ? error : `ERROR frame: ${error?.headers?.message ?? ''}`;
        this.fail(why);
        reject(new Error(`${this.name}: ${why}`));
      });
    }));
  }

  subscribe(destination) {
    const sub = this.client.subscribe(destination, (frame) => this.onMessage(frame.headers, frame.body));
    this.subId = sub.id;
  }

  send(body) {
    this.client.send('/pub/chat', {}, JSON.stringify(body));
  }

  sendRaw(text) {
    this.client.send('/pub/chat', {}, text);
  }

  close() {
    this.closing = true;
    try {
      if (this.client?.connected) this.client.disconnect();
      else this.client?.ws?.close();
    } catch {
      // Closing a socket that never opened; nothing to release.
    }
  }
}

// ---------------------------------------------------------------- scenarios

async function singleNode(base) {
  const [wsUrl, wsAlias] = rawUrls(base);
  const a = new RawPeer('raw-a', wsUrl);
  const b = new RawPeer('raw-b', wsAlias);
  const s1 = new SockJsPeer('sockjs-1', base);
  const s2 = new SockJsPeer('sockjs-2', base);
  const httpPeers = HTTP_TRANSPORTS.map(([name]) => new SockJsPeer(name, base, [name]));
  const peers = [a, b, s1, s2, ...httpPeers];
  const before = await scrapeTransports();
  await Promise.all(peers.map((p) => p.connect()));

  check('raw: CONNECTED carries version 1.2, heart-beat and a server header', [a, b].flatMap((p) => {
    const h = p.connected;
    const bad = [];
    if (h.version !== '1.2') bad.push(`${p.name}: version ${h.version}`);
    if (!h['heart-beat']) bad.push(`${p.name}: no heart-beat header`);
    if (!h.server) bad.push(`${p.name}: no server header`);
    if (!STOMP_SUBPROTOCOLS.includes(p.subprotocol)) bad.push(`${p.name}: subprotocol ${p.subprotocol}`);
    return bad;
  }));
  check('sockjs: CONNECTED carries version 1.1 and heart-beat', [s1, s2].flatMap((p) => {
    const h = p.connected;
    const bad = [];
    if (h.version !== '1.1') bad.push(`${p.name}: version ${h.version}`);
    if (!h['heart-beat']) bad.push(`${p.name}: no heart-beat header`);
    return bad;
  }));

  check('sockjs: /info answers a cross-origin request with credentials', await infoProblems(base));
  check('sockjs: the forced clients use their HTTP transport', transportProblems(httpPeers));
  check('sockjs: CONNECTED over the HTTP transports carries version 1.1 and heart-beat', httpPeers.flatMap((p) =>
    (p.connected.version === '1.1' && p.connected['heart-beat']) ? [] : [`${p.name}: ${JSON.stringify(p.connected)}`]));

  for (const p of peers) p.subscribe('/sub/chat/global');
  await barrier(peers, 'global');

  // The first body goes out exactly as written, key order and all.
  const hi = '{"channel":"global","sender":"a","message":"hi"}';
  const big = { channel: 'global', sender: 'a', message: 'x'.repeat(BIG_MESSAGE_BYTES) + nonce };
  const fromSockJs = { channel: 'global', sender: 's1', message: `안녕하세요 from sockjs ${nonce}` };
  a.sendRaw(hi);
  a.send(big);
  s1.send(fromSockJs);
  // From each HTTP transport: text that JSON, SockJS and eventsource's decodeURI must
  // all leave alone; and from xhr-streaming a 40 KiB one, which stompjs cuts into 16 KiB
  // pieces that arrive in more than one xhr_send.
  const fromHttp = httpPeers.map((p) => ({
    body: { channel: 'global', sender: p.name, message: `100% %41 %zz "q" \\ \u2028 ü ${p.name} ${nonce}` },
    from: p,
  }));
  const bigHttp = { channel: 'global', sender: `${httpPeers[0].name}-big`, message: 'y'.repeat(BIG_MESSAGE_BYTES) + nonce };
  for (const { body, from } of fromHttp) from.send(body);
  httpPeers[0].send(bigHttp);
  const expected = [
    { sender: 'a', message: 'hi', from: a, label: '"hi"' },
    { sender: 'a', message: big.message, from: a, label: 'the 40 KiB message' },
    { sender: 's1', message: fromSockJs.message, from: s1, label: 'the sockjs message' },
    ...fromHttp.map(({ body, from }) => ({ sender: body.sender, message: body.message, from, label: `the ${from.name} message` })),
    { sender: bigHttp.sender, message: bigHttp.message, from: httpPeers[0], label: 'the 40 KiB xhr-streaming message' },
  ];
  const got = (p, e) => p.messages.filter((m) => m.json.sender === e.sender && m.json.message === e.message);
  await waitFor(() => peers.every((p) => expected.every((e) => got(p, e).length > 0)));

  const deliveredTo = (e, receivers) => receivers.flatMap((p) => {
    const ms = got(p, e);
    if (ms.length === 0) return [`${p.name} did not get ${e.label} from ${e.from.name}`];
    if (ms.length > 1) return [`${p.name} got ${e.label} ${ms.length} times`];
    const { json, headers } = ms[0];
    const bad = [];
    if (json.channel !== 'global') bad.push(`${p.name}: channel ${json.channel}`);
    if (json.time === undefined || json.time === null) bad.push(`${p.name}: no time field added`);
    if (headers.destination !== '/sub/chat/global') bad.push(`${p.name}: destination ${headers.destination}`);
    if (headers.subscription !== p.subId) bad.push(`${p.name}: subscription ${headers.subscription}, want ${p.subId}`);
    if (!headers['message-id']) bad.push(`${p.name}: no message-id`);
    if (!/^application\/json/.test(headers['content-type'] ?? '')) {
      bad.push(`${p.name}: content-type ${headers['content-type']}`);
    }
    return bad;
  });

  check('raw: "hi" reaches both raw clients intact, with time, destination, subscription, message-id',
    deliveredTo(expected[0], [a, b]));
  check(`raw: a ${BIG_MESSAGE_BYTES / 1024} KiB message sent in ${CHUNK_BYTES / 1024} KiB chunks arrives intact`,
    deliveredTo(expected[1], [a, b]));
  check('sockjs: the sender gets its own message echoed', deliveredTo(expected[2], [s1]));
  check('sockjs: a second sockjs client gets it too', deliveredTo(expected[2], [s2]));
  check('mixed: a sockjs message reaches the raw clients', deliveredTo(expected[2], [a, b]));
  check('mixed: raw messages (small and large) reach the sockjs clients',
    [...deliveredTo(expected[0], [s1, s2]), ...deliveredTo(expected[1], [s1, s2])]);
  check('http transports: every message, large and small, reaches the xhr-streaming, xhr-polling and eventsource clients',
    expected.flatMap((e) => deliveredTo(e, httpPeers)));
  check('http transports: their messages (with %, quotes, U+2028) reach WebSocket and SockJS clients intact',
    expected.slice(3).flatMap((e) => deliveredTo(e, [a, b, s1, s2])));
  check('the engine counted requests of each forced HTTP transport', countProblems(before, await scrapeTransports()));
  check('no client saw an error, a dropped socket or a non-JSON body', peers.flatMap(problems));
  return peers;
}

async function cluster(base) {
  const urls = rawUrls(base);
  const peers = [];
  const perNode = new Map();
  const maxAttempts = opts.nodes * 6;
  // Connect one at a time so that least_conn sees each socket before the next.
  for (let i = 0; i < maxAttempts; i++) {
    const p = new RawPeer(`raw-${i}`, urls[i % urls.length]);
    peers.push(await p.connect());
    perNode.set(p.node(), (perNode.get(p.node()) ?? 0) + 1);
    if (perNode.size >= opts.nodes && [...perNode.values()].every((n) => n >= 2)) break;
  }
  for (let i = 0; i < 2; i++) {
    const p = new SockJsPeer(`sockjs-${i}`, base);
    peers.push(await p.connect());
    perNode.set(p.node(), (perNode.get(p.node()) ?? 0) + 1);
  }
  // One client per HTTP transport: Nginx must keep each one's requests on one node.
  const before = await scrapeTransports();
  const httpPeers = [];
  for (const [name] of HTTP_TRANSPORTS) {
    const p = new SockJsPeer(name, base, [name]);
    httpPeers.push(await p.connect());
    perNode.set(p.node(), (perNode.get(p.node()) ?? 0) + 1);
  }
  peers.push(...httpPeers);
  check('sockjs: the forced clients use their HTTP transport', transportProblems(httpPeers));
  const spread = [...perNode].map(([node, n]) => `${node}=${n}`).join(' ');
  console.log(`# clients per node: ${spread}`);
  check(`clients landed on ${opts.nodes} nodes through the balancer`,
    perNode.size >= opts.nodes && !perNode.has('?') ? [] : [`nodes seen: ${spread}`]);

  const channel = `cluster-${nonce}`;
  for (const p of peers) p.subscribe(`/sub/chat/${channel}`);
  await barrier(peers, channel);

  const perSender = 3;
  for (let k = 0; k < perSender; k++) {
    for (const p of peers) p.send({ channel, sender: p.name, message: `${k} ${nonce}` });
  }
  const total = peers.length * perSender;
  await waitFor(() => peers.every((p) => p.messages.length >= total));

  check(`every message (${total}) reaches every subscriber (${peers.length}) on every node`, peers.flatMap((p) => {
    const missing = [];
    for (const q of peers) {
      for (let k = 0; k < perSender; k++) {
        if (!p.messages.some((m) => m.json.sender === q.name && m.json.message === `${k} ${nonce}`)) {
          missing.push(`${q.name}@${q.node()}#${k}`);
        }
      }
    }
    return missing.length ? [`${p.name}@${p.node()} missed ${missing.join(' ')}`] : [];
  }));
  check('no subscriber got a message twice', peers.flatMap((p) => {
    const seen = new Set();
    return p.messages.filter((m) => {
      const key = `${m.json.sender}|${m.json.message}`;
      return seen.has(key) || !seen.add(key);
    }).map((m) => `${p.name}@${p.node()}: duplicate ${m.json.sender} "${m.json.message}"`);
  }));
  check("each sender's messages arrive in the order sent", peers.flatMap((p) => {
    const bad = [];
    for (const q of peers) {
      const order = p.messages.filter((m) => m.json.sender === q.name).map((m) => m.json.message.split(' ')[0]);
      if (order.join() !== [...order].sort().join()) bad.push(`${p.name}@${p.node()} got ${q.name}: ${order}`);
    }
    return bad;
  }));
  check('bodies keep channel/sender/message and carry a time field', peers.flatMap((p) =>
    p.messages.filter((m) => m.json.channel !== channel || m.json.time === undefined || m.json.time === null)
      .map((m) => `${p.name}: ${short(m.body)}`)));
  check('the engines counted requests of each forced HTTP transport', countProblems(before, await scrapeTransports()));
  check('no client saw an error, a dropped socket or a non-JSON body', peers.flatMap(problems));
  return peers;
}

// ---------------------------------------------------------------- helpers

/** Peers whose sockjs-client ended up on another transport than the one it was given. */
function transportProblems(httpPeers) {
  return httpPeers.filter((p) => p.transport !== p.transports[0])
    .map((p) => `${p.name}: sockjs-client used ${p.transport}`);
}

/**
 * The engines' `chat_sockjs_http_requests_total` by transport label, summed over shards
 * and over every --metrics URL (null when a URL does not answer).
 */
async function scrapeTransports() {
  const counts = new Map();
  for (const url of opts.metrics) {
    let res;
    try {
      res = await request('GET', url, {});
    } catch {
      return null;
    }
    if (res.status !== 200) return null;
    for (const m of res.body.matchAll(/^chat_sockjs_http_requests_total\{[^}]*transport="([a-z_]+)"[^}]*\} (\d+)$/gm)) {
      counts.set(m[1], (counts.get(m[1]) ?? 0) + Number(m[2]));
    }
  }
  return counts;
}

/** Transports whose request counter did not grow between two scrapes. */
function countProblems(before, after) {
  if (!before || !after) return [`could not read ${opts.metrics.join(' ')}`];
  const grew = (label) => (after.get(label) ?? 0) - (before.get(label) ?? 0);
  const bad = HTTP_TRANSPORTS.filter(([, label]) => grew(label) <= 0).map(([name, label]) =>
    `${name}: chat_sockjs_http_requests_total{transport="${label}"} did not grow`);
  if (grew('xhr_send') <= 0) bad.push('xhr_send: chat_sockjs_http_requests_total{transport="xhr_send"} did not grow');
  if (bad.length === 0) {
    console.log(`# requests by transport: ${HTTP_TRANSPORTS.map(([, l]) => `${l}=${grew(l)}`).join(' ')} xhr_send=${grew('xhr_send')}`);
  }
  return bad;
}

/** Raw STOMP endpoints: `{base}/websocket` and the `/ws` alias at the root. */
function rawUrls(base) {
  const ws = base.replace(/^http/, 'ws');
  return [`${ws}/websocket`, `${new URL(ws).origin}/ws`];
}

/**
 * A browser page on another origin first GETs `{base}/info` with credentials
 * (after an OPTIONS preflight when it adds headers): the answer must echo the
 * Origin, allow credentials and say that the websocket transport is on.
 */
async function infoProblems(base) {
  const origin = 'http://chat.example.test:3000';
  const bad = [];
  const get = await request('GET', `${base}/info?t=${Date.now()}`, { Origin: origin });
  if (get.status !== 200) bad.push(`GET /info: status ${get.status}`);
  if (get.headers['access-control-allow-origin'] !== origin) {
    bad.push(`GET /info: Access-Control-Allow-Origin ${get.headers['access-control-allow-origin']}, want ${origin}`);
  }
  if (get.headers['access-control-allow-credentials'] !== 'true') {
    bad.push(`GET /info: Access-Control-Allow-Credentials ${get.headers['access-control-allow-credentials']}`);
  }
  try {
    if (JSON.parse(get.body).websocket !== true) bad.push(`GET /info: websocket is not true in ${short(get.body)}`);
  } catch {
    bad.push(`GET /info: body is not JSON: ${short(get.body)}`);
  }
  const pre = await request('OPTIONS', `${base}/info`, {
    Origin: origin,
    'Access-Control-Request-Method': 'GET',
    'Access-Control-Request-Headers': 'content-type',
  });
  if (pre.status < 200 || pre.status >= 300) bad.push(`OPTIONS /info: status ${pre.status}`);
  if (pre.headers['access-control-allow-origin'] !== origin) {
    bad.push(`OPTIONS /info: Access-Control-Allow-Origin ${pre.headers['access-control-allow-origin']}`);
  }
  return bad;
}

function request(method, url, headers) {
  const lib = url.startsWith('https:') ? https : http;
  return withDeadline(`${method} ${url}`, new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  }));
}

/**
 * Subscriptions take effect asynchronously (other shards, other nodes, a Kafka
 * consumer that is still joining), so before the counted messages every peer
 * publishes a probe every PROBE_INTERVAL_MS until each peer has seen a probe
 * from every peer. Probes are not counted by the checks.
 */
async function barrier(peers, channel) {
  const done = () => peers.every((p) => peers.every((q) => p.probesFrom.has(q.name)));
  while (!done()) {
    if (Date.now() >= deadline) {
      const lagging = peers.filter((p) => peers.some((q) => !p.probesFrom.has(q.name))).map((p) => {
        const unheard = peers.filter((q) => !p.probesFrom.has(q.name)).map((q) => `${q.name}@${q.node()}`);
        return `${p.name}@${p.node()} never got a probe from ${unheard.join(' ')}`;
      });
      const noEcho = peers.some((p) => !p.probesFrom.has(p.name));
      throw new Error(`subscriptions never all became live: ${lagging.slice(0, 4).join('; ')}`
        + (lagging.length > 4 ? `; and ${lagging.length - 4} more` : '')
        + (noEcho ? ' (some never got their own probe back: clients drop a MESSAGE whose'
          + ' subscription header is not their own id)' : ''));
    }
    for (const q of peers) {
      if (!peers.every((p) => p.probesFrom.has(q.name))) {
        q.send({ channel, sender: `probe:${q.name}`, message: nonce });
      }
    }
    await sleep(PROBE_INTERVAL_MS);
  }
}

async function waitFor(cond) {
  while (!cond() && Date.now() < deadline) await sleep(50);
}

function withDeadline(what, promise) {
  const left = Math.max(deadline - Date.now(), 0);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within the time limit`)), left);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function problems(p) {
  return p.problems.map((why) => `${p.name}: ${why}`);
}

function check(name, failures) {
  results.push({ name, failures });
  if (failures.length === 0) {
    console.log(`ok - ${name}`);
  } else {
    console.log(`not ok - ${name}`);
    for (const f of failures.slice(0, 10)) console.log(`    ${f}`);
    if (failures.length > 10) console.log(`    ... and ${failures.length - 10} more`);
  }
}

function short(s) {
  const text = String(s ?? '');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseArgs(args) {
  const out = { cluster: false, nodes: 2, timeoutMs: null, base: null, metrics: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--cluster') out.cluster = true;
    else if (arg === '--nodes') out.nodes = Number(args[++i]);
    else if (arg === '--timeout-ms') out.timeoutMs = Number(args[++i]);
    else if (arg === '--metrics') out.metrics.push(args[++i]);
    else if (!arg.startsWith('--') && out.base === null) out.base = arg.replace(/\/+$/, '');
    else usage(`unexpected argument ${arg}`);
  }
  if (!out.base || !/^https?:\/\//.test(out.base)) usage('URL_BASE must be an http:// or https:// URL');
  if (!(out.nodes >= 1)) usage('--nodes needs a positive number');
  out.timeoutMs ??= out.cluster ? 60000 : 30000;
  if (out.metrics.length === 0) out.metrics.push(`${new URL(out.base).origin}/metrics`);
  return out;
}

function usage(why) {
  console.error(`compat.mjs: ${why}`);
  console.error('usage: node compat.mjs [--cluster] [--nodes N] [--timeout-ms MS] [--metrics URL]... URL_BASE');
  process.exit(2);
}

// ---------------------------------------------------------------- main

let peers = [];
let exitCode = 0;
try {
  peers = await (opts.cluster ? cluster(opts.base) : singleNode(opts.base));
} catch (err) {
  check('scenario ran to the end', [err?.message ?? String(err)]);
}
const failed = results.filter((r) => r.failures.length > 0).length;
console.log(`compat: ${results.length - failed} passed, ${failed} failed`);
if (failed > 0) exitCode = 1;
await Promise.race([Promise.allSettled(peers.map((p) => p.close())), sleep(1000)]);
process.exit(exitCode);
