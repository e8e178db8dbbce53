// Authentication flows with @stomp/stompjs 7 over raw WebSocket, against an engine
// started with --auth-jwt-secret-file (HS256) and --allowed-origins.
//
//   node auth.mjs --secret SECRET --origin ALLOWED_ORIGIN URL_BASE
//
// Tokens are signed here with node's crypto (HS256 by hand: base64url header and claims,
// HMAC-SHA256 over them). Checks: a Bearer token and a passcode token connect, the
// server puts the token's sub in `sender`; forged, expired and missing tokens get an
// ERROR on CONNECT; a forbidden SUBSCRIBE and SEND get an ERROR naming the destination;
// a token that expires during the connection ends it with an ERROR; an upgrade from a
// foreign Origin is refused with 403 and one from the allowed Origin is not.
// Prints `ok - ...` / `not ok - ...` per check; exits 0 only when all pass.

import crypto from 'node:crypto';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const opts = parseArgs(process.argv.slice(2));
const wsUrl = opts.base.replace(/^http/, 'ws') + '/websocket';
const nonce = `${process.pid}-${Date.now().toString(36)}`;
const results = [];

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

function sign(secret, claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const mac = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${mac}`;
}

function token(sub, { secs = 3600, chat, secret = opts.secret } = {}) {
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + secs };
  if (chat) claims.chat = chat;
  return sign(secret, claims);
}

/** A @stomp/stompjs client that reports CONNECTED, ERROR, MESSAGE and close as events. */
function open(connectHeaders, origin) {
  const events = [];
  let wake = null;
  const push = (e) => {
    events.push(e);
    if (wake) wake();
  };
  const client = new Client({
    webSocketFactory: () => new WebSocket(wsUrl, ['v12.stomp'], origin ? { origin } : {}),
    connectHeaders,
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
    onConnect: () => push({ kind: 'connected' }),
    onStompError: (frame) =>
      push({ kind: 'error', message: (frame.headers.message ?? '').replaceAll('\\c', ':') }),
    onWebSocketClose: (evt) => push({ kind: 'closed', code: evt.code }),
    onWebSocketError: (evt) => push({ kind: 'socket-error', message: String(evt?.message ?? evt) }),
  });
  client.activate();
  const next = async (ms = 5000) => {
    const until = Date.now() + ms;
    while (events.length === 0) {
      const left = until - Date.now();
      if (left <= 0) return { kind: 'timeout' };
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, left);
      });
      wake = null;
    }
    return events.shift();
  };
  return { client, next, messages: [] };
}

function check(name, ok, detail = '') {
  results.push(ok);
  console.log(`${ok ? 'ok' : 'not ok'} - ${name}${ok || !detail ? '' : `: ${detail}`}`);
}

async function expectRefusal(name, peer, message) {
  const first = await peer.next();
  const closed = first.kind === 'error' ? await peer.next() : first;
  check(name, first.kind === 'error' && first.message === message && closed.kind === 'closed',
    JSON.stringify([first, closed]));
  await peer.client.deactivate();
}

async function main() {
  const room = `room-${nonce}`;

  // A Bearer token and a passcode token connect; sender is the token's sub.
  const alice = open({ Authorization: `Bearer ${token('alice@letters.test')}` });
  check('a Bearer token in Authorization connects', (await alice.next()).kind === 'connected');
  const got = new Promise((resolve) => {
    alice.client.subscribe(`/sub/chat/${room}`, (msg) => resolve(JSON.parse(msg.body)));
  });
  const bob = open({ login: 'bob', passcode: token('bob') });
  check('a token in passcode connects', (await bob.next()).kind === 'connected');
  // Wait for alice's subscription to be in place: a receipt on a second SUBSCRIBE.
  await new Promise((resolve) => {
    alice.client.watchForReceipt('r-sub', resolve);
    alice.client.subscribe(`/sub/chat/${room}-other`, () => {}, { receipt: 'r-sub' });
  });
  bob.client.publish({
    destination: '/pub/chat',
    body: JSON.stringify({ channel: room, sender: 'alice@letters.test', message: 'as alice?' }),
  });
  const json = await Promise.race([got, new Promise((r) => setTimeout(() => r(null), 5000))]);
  check('the server sets sender from the token, not the body',
    json?.sender === 'bob' && json?.message === 'as alice?' && typeof json?.time === 'string',
    JSON.stringify(json));
  await alice.client.deactivate();
  await bob.client.deactivate();

  // Refused CONNECTs.
  await expectRefusal('a forged token is refused on CONNECT',
    open({ Authorization: `Bearer ${token('mallory', { secret: 'not the secret' })}` }), 'invalid token');
  await expectRefusal('an expired token is refused on CONNECT',
    open({ Authorization: `Bearer ${token('late', { secs: -120 })}` }), 'token expired');
  await expectRefusal('no token is refused on CONNECT', open({}),
    'authentication required: send Authorization:Bearer <token> in CONNECT');

  // Channel permissions.
  const chat = { subscribe: ['team-*'], publish: ['team-red'] };
  const carol = open({ Authorization: `Bearer ${token('carol', { chat })}` });
  await carol.next();
  carol.client.subscribe('/sub/chat/staff', () => {});
  await expectRefusal('a forbidden SUBSCRIBE gets an ERROR naming the destination', carol,
    'forbidden: this token may not subscribe to /sub/chat/staff');
  const dave = open({ Authorization: `Bearer ${token('dave', { chat })}` });
  await dave.next();
  dave.client.publish({ destination: '/pub/chat', body: JSON.stringify({ channel: 'team-blue', message: 'x' }) });
  await expectRefusal('a forbidden SEND gets an ERROR naming the destination', dave,
    'forbidden: this token may not publish to /sub/chat/team-blue');

  // A token expiring during the connection ends it.
  const brief = open({ Authorization: `Bearer ${token('brief', { secs: 2 })}` });
  check('a short-lived token connects', (await brief.next()).kind === 'connected');
  await expectRefusal('the connection ends with an ERROR when its token expires', brief, 'token expired');

  // Origins.
  const foreign = await new Promise((resolve) => {
    const ws = new WebSocket(wsUrl, ['v12.stomp'], { origin: 'http://evil.test' });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('error', () => resolve('error'));
  });
  check('an upgrade from a foreign Origin is refused with 403', foreign === 403, String(foreign));
  const local = open({ Authorization: `Bearer ${token('erin')}` }, opts.origin);
  check('an upgrade from the allowed Origin connects', (await local.next()).kind === 'connected');
  await local.client.deactivate();
}

function parseArgs(args) {
  const out = { secret: '', origin: '', base: '' };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--secret') out.secret = args[++i];
    else if (args[i] === '--origin') out.origin = args[++i];
    else out.base = args[i];
  }
  if (!out.secret || !out.origin || !out.base) {
    console.error('usage: node auth.mjs --secret SECRET --origin ALLOWED_ORIGIN URL_BASE');
    process.exit(2);
  }
  return out;
}

const timer = setTimeout(() => {
  console.log('not ok - finished within 30 s');
  process.exit(1);
}, 30_000);
main()
  .catch((e) => check('no exception', false, e?.stack ?? String(e)))
  .finally(() => {
    clearTimeout(timer);
    const failed = results.filter((ok) => !ok).length;
    console.log(`${results.length - failed}/${results.length} passed`);
    process.exit(failed === 0 && results.length > 0 ? 0 : 1);
  });
