// A real browser on SockJS's HTTP transports: headless Chromium (Debian's, driven by
// playwright-core) opens pages that load sockjs-client 1.6 and stompjs 2.3.3 from
// node_modules, served by a tiny local HTTP server on another origin than the engines
// (so every request is cross-origin, with credentials, as in production), with the
// websocket transport disabled. The pages chat with each other and with a WebSocket
// client through URL_BASE (Nginx in front of the cluster, or one engine).
//
//   node browser.mjs [--out DIR] [--timeout-ms MS] [--metrics URL]... [--chromium PATH] URL_BASE
//
// Pages: `fallback` offers every transport but websocket (sockjs-client picks
// xhr-streaming), `eventsource` and `xhr-polling` are forced to one each. Checks that each
// page used the transport expected, that every message reached every page and the
// WebSocket client, that the engines counted requests of those transports (--metrics,
// default URL_BASE's origin + /metrics), and saves a screenshot of each page in DIR
// (default target/browser). Prints `ok - ...` / `not ok - ...`; exits 0 when all pass.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const opts = parseArgs(process.argv.slice(2));
const deadline = Date.now() + opts.timeoutMs;
const nonce = `${process.pid}-${Date.now().toString(36)}`;
const channel = `browser-${nonce}`;
const results = [];

const EVERY_TRANSPORT_BUT_WEBSOCKET = [
  'xhr-streaming', 'xdr-streaming', 'eventsource', 'iframe-eventsource', 'htmlfile',
  'iframe-htmlfile', 'xhr-polling', 'xdr-polling', 'iframe-xhr-polling', 'jsonp-polling',
];
// name, transports offered, transport expected, its label in the engine's metrics
const PAGES = [
  ['fallback', EVERY_TRANSPORT_BUT_WEBSOCKET, 'xhr-streaming', 'xhr_streaming'],
  ['eventsource', ['eventsource'], 'eventsource', 'eventsource'],
  ['xhr-polling', ['xhr-polling'], 'xhr-polling', 'xhr'],
];
const LAUNCH_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// The page: connects like the chat's React client (Stomp.over(new SockJS(base))),
// subscribes to the room, and lists what it receives.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>chat over SockJS HTTP</title>
<style>body{font:14px sans-serif;margin:16px} li{margin:2px 0} .me{color:#06c} h1{font-size:18px}</style>
<script src="/sockjs.min.js"></script><script src="/stomp.min.js"></script></head>
<body><h1 id="title">connecting…</h1><ul id="log"></ul>
<script>
  const q = new URLSearchParams(location.search);
  const name = q.get('name'), room = q.get('room');
  window.chat = { connected: false, transport: null, server: null, received: [], errors: [] };
  const sock = new SockJS(q.get('base'), null, { transports: q.get('transports').split(',') });
  const client = Stomp.over(sock);
  client.debug = null;
  client.connect({}, (frame) => {
    chat.transport = sock.transport;
    chat.server = frame.headers.server || '';
    document.getElementById('title').textContent =
      name + ': ' + sock.transport + ' from ' + location.origin + ' to ' + q.get('base') + ' (' + chat.server + ')';
    client.subscribe('/sub/chat/' + room, (m) => {
      const json = JSON.parse(m.body);
      chat.received.push(json);
      if (json.sender.startsWith('probe:')) return;
      const li = document.createElement('li');
      li.textContent = json.sender + ': ' + json.message + '  [' + json.time + ']';
      if (json.sender === name) li.className = 'me';
      document.getElementById('log').appendChild(li);
    });
    chat.connected = true;
  }, (e) => chat.errors.push(String((e && e.headers && e.headers.message) || e)));
  sock.addEventListener('close', (e) => { if (!chat.closing) chat.errors.push('closed ' + e.code + ' ' + e.reason); });
  window.send = (sender, message) => client.send('/pub/chat', {}, JSON.stringify({ channel: room, sender, message }));
</script></body></html>`;

// ---------------------------------------------------------------- the page's server

function serveAssets() {
  const assets = {
    '/sockjs.min.js': path.join(here, 'node_modules/sockjs-client/dist/sockjs.min.js'),
    '/stomp.min.js': path.join(here, 'node_modules/stompjs/lib/stomp.min.js'),
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else if (assets[url.pathname]) {
      res.writeHead(200, { 'Content-Type': 'application/javascript' });
      fs.createReadStream(assets[url.pathname]).pipe(res);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// ---------------------------------------------------------------- peers

/** A browser page: its name, the transport it should end up on, and its `window.chat`. */
class PagePeer {
  constructor(name, page, expected, label) {
    Object.assign(this, { name, page, expected, label });
  }

  state() {
    return this.page.evaluate(() => window.chat);
  }

  send(message, sender = this.name) {
    return this.page.evaluate(([s, m]) => window.send(s, m), [sender, message]);
  }
}

/** A WebSocket client (@stomp/stompjs 7 on the raw endpoint) in the same room. */
class WsPeer {
  constructor(url) {
    this.name = 'websocket';
    this.received = [];
    this.errors = [];
    this.url = url;
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.client = new Client({
        webSocketFactory: () => new WebSocket(this.url, ['v12.stomp']),
        reconnectDelay: 0,
        debug: () => {},
        onConnect: (frame) => {
          this.server = frame.headers.server ?? '';
          this.client.subscribe(`/sub/chat/${channel}`, (m) => this.received.push(JSON.parse(m.body)));
          resolve();
        },
        onStompError: (f) => reject(new Error(`ERROR ${f.headers.message}`)),
        onWebSocketClose: (e) => { if (!this.closing) this.errors.push(`closed ${e.code}`); reject(new Error('closed')); },
      });
      this.client.activate();
    });
  }

  state() {
    return { received: this.received, errors: this.errors, server: this.server };
  }

  send(message, sender = this.name) {
    this.client.publish({ destination: '/pub/chat', body: JSON.stringify({ channel, sender, message }) });
  }
}

// ---------------------------------------------------------------- scenario

async function run(browser) {
  const assets = await serveAssets();
  const origin = `http://127.0.0.1:${assets.address().port}`;
  const before = await scrapeTransports();
  const peers = [];
  try {
    for (const [name, transports, expected, label] of PAGES) {
      const page = await browser.newPage({ viewport: { width: 900, height: 420 } });
      page.on('pageerror', (e) => console.log(`# ${name}: page error ${e.message}`));
      const query = new URLSearchParams({ name, room: channel, base: opts.base, transports: transports.join(',') });
      await page.goto(`${origin}/?${query}`);
      await page.waitForFunction(() => window.chat.connected || window.chat.errors.length > 0, null, { timeout: left() });
      peers.push(new PagePeer(name, page, expected, label));
    }
    const ws = new WsPeer(`${new URL(opts.base).origin.replace(/^http/, 'ws')}/ws`);
    await withDeadline('websocket client: CONNECTED', ws.connect());
    peers.push(ws);

    const pages = peers.filter((p) => p instanceof PagePeer);
    const states = await Promise.all(pages.map((p) => p.state()));
    console.log(`# pages on ${origin}; ${pages.map((p, i) => `${p.name}=${states[i].transport}@${server(states[i])}`).join(' ')} websocket@${server(ws.state())}`);
    check('each page connected over the transport expected, websocket disabled', pages.flatMap((p, i) =>
      states[i].transport === p.expected ? [] : [`${p.name}: ${states[i].transport ?? 'not connected'} (${states[i].errors})`]));

    await barrier(peers);
    for (const p of peers) await p.send(`hello from ${p.name}: 100% ✓ "quoted" ${nonce}`);
    const wanted = peers.map((p) => `hello from ${p.name}: 100% ✓ "quoted" ${nonce}`);
    const missing = async () => {
      const out = [];
      for (const p of peers) {
        const got = new Set((await p.state()).received.map((m) => m.message));
        for (const w of wanted) if (!got.has(w)) out.push(`${p.name} did not get "${w.split(':')[0]}"`);
      }
      return out;
    };
    while ((await missing()).length > 0 && Date.now() < deadline) await sleep(100);
    check('every message reaches every page and the WebSocket client, across nodes', await missing());
    const finals = await Promise.all(peers.map((p) => p.state()));
    check('no page saw an error or a closed session', peers.flatMap((p, i) => finals[i].errors.map((e) => `${p.name}: ${e}`)));

    fs.mkdirSync(opts.out, { recursive: true });
    for (const p of pages) {
      const file = path.join(opts.out, `browser-${p.name}.png`);
      await p.page.screenshot({ path: file, fullPage: true });
      console.log(`# screenshot ${file}`);
    }
    const after = await scrapeTransports();
    check('the engines counted requests of each page\'s transport', countProblems(before, after, pages));
    ws.closing = true;
    await ws.client.deactivate();
    for (const p of pages) await p.page.evaluate(() => { window.chat.closing = true; });
  } finally {
    assets.close();
  }
}

/** Each peer sends probes until every peer heard every other (subscriptions are live). */
async function barrier(peers) {
  for (;;) {
    const heard = await Promise.all(peers.map(async (p) =>
      new Set((await p.state()).received.filter((m) => m.message === nonce).map((m) => m.sender.slice(6)))));
    const lagging = peers.filter((q) => heard.some((h) => !h.has(q.name)));
    if (lagging.length === 0) return;
    if (Date.now() >= deadline) throw new Error(`subscriptions never all became live: ${lagging.map((q) => q.name)}`);
    for (const q of lagging) await q.send(nonce, `probe:${q.name}`);
    await sleep(300);
  }
}

// ---------------------------------------------------------------- helpers

function server(state) {
  return /node=(\S+)/.exec(state.server ?? '')?.[1] ?? '?';
}

async function scrapeTransports() {
  const counts = new Map();
  for (const url of opts.metrics) {
    const body = await new Promise((resolve) => {
      http.get(url, (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => resolve(res.statusCode === 200 ? text : null));
      }).on('error', () => resolve(null));
    });
    if (body === null) return null;
    for (const m of body.matchAll(/^chat_sockjs_http_requests_total\{[^}]*transport="([a-z_]+)"[^}]*\} (\d+)$/gm)) {
      counts.set(m[1], (counts.get(m[1]) ?? 0) + Number(m[2]));
    }
  }
  return counts;
}

function countProblems(before, after, pages) {
  if (!before || !after) return [`could not read ${opts.metrics.join(' ')}`];
  const grew = (label) => (after.get(label) ?? 0) - (before.get(label) ?? 0);
  const labels = [...new Set(pages.map((p) => p.label)), 'xhr_send'];
  console.log(`# requests by transport: ${labels.map((l) => `${l}=${grew(l)}`).join(' ')}`);
  return labels.filter((l) => grew(l) <= 0).map((l) => `chat_sockjs_http_requests_total{transport="${l}"} did not grow`);
}

function check(name, failures) {
  results.push({ name, failures });
  console.log(`${failures.length === 0 ? 'ok' : 'not ok'} - ${name}`);
  for (const f of failures.slice(0, 10)) console.log(`    ${f}`);
}

function left() {
  return Math.max(deadline - Date.now(), 1);
}

function withDeadline(what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within the time limit`)), left());
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseArgs(args) {
  const out = {
    base: null,
    out: path.resolve(here, '../../../target/browser'),
    timeoutMs: 60000,
    metrics: [],
    chromium: '/usr/bin/chromium',
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--out') out.out = path.resolve(args[++i]);
    else if (arg === '--timeout-ms') out.timeoutMs = Number(args[++i]);
    else if (arg === '--metrics') out.metrics.push(args[++i]);
    else if (arg === '--chromium') out.chromium = args[++i];
    else if (!arg.startsWith('--') && out.base === null) out.base = arg.replace(/\/+$/, '');
    else usage(`unexpected argument ${arg}`);
  }
  if (!out.base || !/^http:\/\//.test(out.base)) usage('URL_BASE must be an http:// URL');
  if (out.metrics.length === 0) out.metrics.push(`${new URL(out.base).origin}/metrics`);
  return out;
}

function usage(why) {
  console.error(`browser.mjs: ${why}`);
  console.error('usage: node browser.mjs [--out DIR] [--timeout-ms MS] [--metrics URL]... [--chromium PATH] URL_BASE');
  process.exit(2);
}

// ---------------------------------------------------------------- main

let browser;
try {
  browser = await chromium.launch({ executablePath: opts.chromium, args: LAUNCH_ARGS, timeout: left() });
  await run(browser);
} catch (err) {
  check('scenario ran to the end', [err?.message ?? String(err)]);
} finally {
  await browser?.close().catch(() => {});
}
const failed = results.filter((r) => r.failures.length > 0).length;
console.log(`browser: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
