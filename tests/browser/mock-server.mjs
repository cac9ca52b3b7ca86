// A small in-memory stand-in for the confab server, written from the contract
// (docs/gateway.md and the REST list in DESIGN.md). It exists so the web client and the chat
// browser test can run before/without the Rust server: `CONFAB_MOCK=1 node --test chat.test.mjs`.
// It has no media plane: voice joins produce VOICE_STATE_UPDATE, offers get op 14 code 4500.
// Not a reference implementation: the real server is the authority.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { WebSocketServer } from 'ws';

const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

export async function startMockServer({ webRoot, port = 0 } = {}) {
  let seq = 1000n;
  const id = () => String(BigInt(Date.now()) * 4096n + (seq++ % 4096n));
  const now = () => new Date().toISOString();
  const users = new Map();       // id -> {user, password}
  const byName = new Map();      // username -> id
  const tokens = new Map();      // access -> {userId, sessionId}
  const refresh = new Map();     // refresh -> sessionId
  const sessions = new Map();    // sessionId -> {id, userId, created_at, last_used_at, user_agent, refresh}
  const servers = new Map();     // id -> server
  const channels = new Map();    // id -> channel
  const members = new Map();     // server_id -> Map(user_id -> member)
  const messages = new Map();    // channel_id -> [message] ascending
  const invites = new Map();
  const voiceStates = new Map(); // user_id -> state
  const conns = new Set();       // gateway connections {ws, userId, seq}

  const err = (res, status, message, errors) => json(res, status, { code: status * 100, message, ...(errors ? { errors } : {}) });
  function json(res, status, body) {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  }
  function issue(userId, ua) {
    const sid = id();
    const s = { id: sid, userId, created_at: now(), last_used_at: now(), user_agent: ua || null };
    const token = crypto.randomBytes(16).toString('hex');
    const rt = crypto.randomBytes(16).toString('hex');
    s.refresh = rt;
    sessions.set(sid, s);
    tokens.set(token, { userId, sessionId: sid });
    refresh.set(rt, sid);
    return { token, refresh_token: rt, user: users.get(userId).user };
  }
  const memberIds = (serverId) => [...(members.get(serverId) || new Map()).keys()];
  function dispatchTo(userIds, t, d) {
    const set = new Set(userIds);
    for (const c of conns) if (c.userId && set.has(c.userId)) { c.seq += 1; c.ws.send(JSON.stringify({ op: 0, t, s: c.seq, d })); }
  }
  const serverFull = (s) => ({ ...s, channels: [...channels.values()].filter((c) => c.server_id === s.id), members: [...members.get(s.id).values()] });
  function addMember(serverId, userId) {
    const m = { server_id: serverId, user: users.get(userId).user, joined_at: now(), nickname: null };
    members.get(serverId).set(userId, m);
    return m;
  }
  function mkChannel(serverId, body, position) {
    const c = { id: id(), server_id: serverId, type: body.type || 'text', name: body.name, position, parent_id: body.parent_id || null, topic: body.topic || null };
    channels.set(c.id, c);
    messages.set(c.id, []);
    return c;
  }
  const readBody = (req) => new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => { try { resolve(data ? JSON.parse(data) : {}); } catch { resolve(null); } });
  });

  async function handleApi(req, res, url) {
    const p = url.pathname.slice('/api/v1'.length);
    const body = ['POST', 'PATCH', 'PUT'].includes(req.method) ? await readBody(req) : {};
    if (body === null) return err(res, 400, 'Invalid JSON');
    const m = (re) => re.exec(p);
    if (req.method === 'POST' && p === '/auth/register') {
      const errors = {};
      if (!body.username || !/^[A-Za-z0-9_.-]{2,32}$/.test(body.username)) errors.username = ['Must be 2-32 characters: letters, digits, _ . -'];
      else if (byName.has(body.username.toLowerCase())) errors.username = ['Username is already taken.'];
      if (!body.password || body.password.length < 8) errors.password = ['Must be at least 8 characters.'];
      if (Object.keys(errors).length) return err(res, 400, 'Invalid form body', errors);
      const uid = id();
      users.set(uid, { password: body.password, user: { id: uid, username: body.username, display_name: null, avatar_url: null, custom_status: null, created_at: now() } });
      byName.set(body.username.toLowerCase(), uid);
      return json(res, 201, issue(uid, req.headers['user-agent']));
    }
    if (req.method === 'POST' && p === '/auth/login') {
      const uid = byName.get(String(body.username || '').toLowerCase());
      if (!uid || users.get(uid).password !== body.password) return err(res, 401, 'Invalid username or password');
      return json(res, 200, issue(uid, req.headers['user-agent']));
    }
    if (req.method === 'POST' && p === '/auth/refresh') {
      const sid = refresh.get(body.refresh_token);
      if (!sid || !sessions.has(sid)) return err(res, 401, 'Invalid refresh token');
      const s = sessions.get(sid);
      refresh.delete(body.refresh_token);
      const token = crypto.randomBytes(16).toString('hex');
      const rt = crypto.randomBytes(16).toString('hex');
      s.refresh = rt; refresh.set(rt, sid); tokens.set(token, { userId: s.userId, sessionId: sid });
      return json(res, 200, { token, refresh_token: rt, user: users.get(s.userId).user });
    }
    const auth = tokens.get(String(req.headers.authorization || '').replace(/^Bearer /, ''));
    if (!auth || !sessions.has(auth.sessionId)) return err(res, 401, 'Unauthorized');
    const me = auth.userId;
    sessions.get(auth.sessionId).last_used_at = now();
    let r;
    if (req.method === 'POST' && p === '/auth/logout') { sessions.delete(auth.sessionId); return json(res, 204); }
    if (p === '/users/@me') {
      if (req.method === 'GET') return json(res, 200, users.get(me).user);
      const u = users.get(me).user;
      for (const k of ['display_name', 'avatar_url', 'custom_status']) if (k in body) u[k] = body[k];
      const shared = new Set([me]);
      for (const [sid, ms] of members) if (ms.has(me)) memberIds(sid).forEach((x) => shared.add(x));
      dispatchTo([...shared], 'USER_UPDATE', u);
      return json(res, 200, u);
    }
    if (p === '/users/@me/sessions' && req.method === 'GET') {
      return json(res, 200, [...sessions.values()].filter((s) => s.userId === me).map((s) => ({ id: s.id, created_at: s.created_at, last_used_at: s.last_used_at, user_agent: s.user_agent, current: s.id === auth.sessionId })));
    }
    if ((r = m(/^\/users\/@me\/sessions\/(\d+)$/)) && req.method === 'DELETE') { sessions.delete(r[1]); return json(res, 204); }
    if (p === '/servers' && req.method === 'GET') return json(res, 200, [...servers.values()].filter((s) => members.get(s.id).has(me)));
    if (p === '/servers' && req.method === 'POST') {
      if (!body.name || !String(body.name).trim()) return err(res, 400, 'Invalid form body', { name: ['Required.'] });
      const s = { id: id(), name: body.name, owner_id: me, created_at: now() };
      servers.set(s.id, s); members.set(s.id, new Map());
      mkChannel(s.id, { name: 'general', type: 'text' }, 0);
      mkChannel(s.id, { name: 'General', type: 'voice' }, 1);
      addMember(s.id, me);
      dispatchTo([me], 'SERVER_CREATE', serverFull(s));
      return json(res, 201, s);
    }
    if ((r = m(/^\/servers\/(\d+)(\/.*)?$/))) {
      const s = servers.get(r[1]);
      if (!s || !members.get(s.id).has(me)) return err(res, 404, 'Unknown server');
      const rest = r[2] || '';
      if (!rest && req.method === 'GET') return json(res, 200, s);
      if (!rest && req.method === 'PATCH') { if (body.name) s.name = body.name; dispatchTo(memberIds(s.id), 'SERVER_UPDATE', s); return json(res, 200, s); }
      if (!rest && req.method === 'DELETE') {
        if (s.owner_id !== me) return err(res, 403, 'Missing permissions');
        dispatchTo(memberIds(s.id), 'SERVER_DELETE', { id: s.id }); servers.delete(s.id); return json(res, 204);
      }
      if (rest === '/channels' && req.method === 'GET') return json(res, 200, [...channels.values()].filter((c) => c.server_id === s.id));
      if (rest === '/channels' && req.method === 'POST') {
        if (s.owner_id !== me) return err(res, 403, 'Missing permissions');
        if (!body.name) return err(res, 400, 'Invalid form body', { name: ['Required.'] });
        const c = mkChannel(s.id, body, [...channels.values()].filter((x) => x.server_id === s.id).length);
        dispatchTo(memberIds(s.id), 'CHANNEL_CREATE', c);
        return json(res, 201, c);
      }
      if (rest === '/members' && req.method === 'GET') return json(res, 200, [...members.get(s.id).values()]);
      if (rest === '/members/@me' && req.method === 'DELETE') {
        members.get(s.id).delete(me);
        dispatchTo(memberIds(s.id), 'MEMBER_REMOVE', { server_id: s.id, user_id: me });
        dispatchTo([me], 'SERVER_DELETE', { id: s.id });
        return json(res, 204);
      }
      if (rest === '/invites' && req.method === 'POST') {
        const inv = { code: crypto.randomBytes(5).toString('base64url'), server_id: s.id, inviter_id: me, max_uses: body.max_uses || 0, uses: 0, max_age: body.max_age || 0, expires_at: null, created_at: now() };
        invites.set(inv.code, inv);
        return json(res, 201, inv);
      }
    }
    if ((r = m(/^\/invites\/([A-Za-z0-9_-]+)$/))) {
      const inv = invites.get(r[1]);
      if (!inv || !servers.has(inv.server_id)) return err(res, 404, 'Unknown invite');
      const s = servers.get(inv.server_id);
      if (req.method === 'GET') return json(res, 200, { ...inv, server: s });
      if (req.method === 'POST') {
        if (!members.get(s.id).has(me)) {
          inv.uses += 1;
          const mem = addMember(s.id, me);
          dispatchTo(memberIds(s.id).filter((x) => x !== me), 'MEMBER_ADD', { server_id: s.id, user: mem.user, joined_at: mem.joined_at });
          // Presence is shared with users you now share a server with, both ways.
          const online = new Set([...conns].filter((x) => x.userId).map((x) => x.userId));
          if (online.has(me)) dispatchTo(memberIds(s.id).filter((x) => x !== me), 'PRESENCE_UPDATE', { user_id: me, status: 'online' });
          dispatchTo([me], 'SERVER_CREATE', { ...serverFull(s), presences: memberIds(s.id).filter((x) => online.has(x)).map((x) => ({ user_id: x, status: 'online' })) });
        }
        return json(res, 200, s);
      }
    }
    if ((r = m(/^\/channels\/(\d+)(\/.*)?$/))) {
      const c = channels.get(r[1]);
      if (!c || !servers.has(c.server_id) || !members.get(c.server_id).has(me)) return err(res, 404, 'Unknown channel');
      const rest = r[2] || '';
      const owner = servers.get(c.server_id).owner_id === me;
      if (!rest && req.method === 'PATCH') {
        if (!owner) return err(res, 403, 'Missing permissions');
        for (const k of ['name', 'position', 'parent_id', 'topic']) if (k in body) c[k] = body[k];
        dispatchTo(memberIds(c.server_id), 'CHANNEL_UPDATE', c); return json(res, 200, c);
      }
      if (!rest && req.method === 'DELETE') {
        if (!owner) return err(res, 403, 'Missing permissions');
        channels.delete(c.id); dispatchTo(memberIds(c.server_id), 'CHANNEL_DELETE', c); return json(res, 204);
      }
      if (rest === '/typing' && req.method === 'POST') {
        dispatchTo(memberIds(c.server_id).filter((x) => x !== me), 'TYPING_START', { channel_id: c.id, server_id: c.server_id, user_id: me, timestamp: Math.floor(Date.now() / 1000) });
        return json(res, 204);
      }
      const list = messages.get(c.id);
      if (rest === '/messages' && req.method === 'GET') {
        const limit = Math.min(100, Math.max(1, Number(url.searchParams.get('limit') || 50)));
        const before = url.searchParams.get('before');
        const after = url.searchParams.get('after');
        const cmp = (a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0);
        let sel = list;
        if (before) sel = sel.filter((x) => cmp(x.id, before) < 0);
        if (after) sel = sel.filter((x) => cmp(x.id, after) > 0).slice(0, limit);
        return json(res, 200, sel.slice(-limit).reverse());
      }
      if (rest === '/messages' && req.method === 'POST') {
        if (typeof body.content !== 'string' || !body.content.trim()) return err(res, 400, 'Invalid form body', { content: ['Cannot send an empty message.'] });
        const msg = { id: id(), channel_id: c.id, server_id: c.server_id, author: users.get(me).user, content: body.content, nonce: body.nonce ?? null, created_at: now(), edited_at: null };
        list.push(msg);
        dispatchTo(memberIds(c.server_id), 'MESSAGE_CREATE', msg);
        return json(res, 201, msg);
      }
      if ((r = /^\/messages\/(\d+)$/.exec(rest))) {
        const msg = list.find((x) => x.id === r[1]);
        if (!msg) return err(res, 404, 'Unknown message');
        if (msg.author.id !== me) return err(res, 403, 'Cannot edit or delete a message authored by another user');
        if (req.method === 'PATCH') { msg.content = body.content; msg.edited_at = now(); dispatchTo(memberIds(c.server_id), 'MESSAGE_UPDATE', msg); return json(res, 200, msg); }
        if (req.method === 'DELETE') { list.splice(list.indexOf(msg), 1); dispatchTo(memberIds(c.server_id), 'MESSAGE_DELETE', { id: msg.id, channel_id: c.id, server_id: c.server_id }); return json(res, 204); }
      }
    }
    return err(res, 404, 'Not found');
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/readyz' || url.pathname === '/healthz') return json(res, 200, { ok: true });
    if (url.pathname.startsWith('/api/v1/')) return handleApi(req, res, url);
    let file = path.normalize(path.join(webRoot, decodeURIComponent(url.pathname)));
    if (!file.startsWith(webRoot) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(webRoot, 'index.html');
    res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  const wss = new WebSocketServer({ server, path: '/api/v1/gateway' });
  wss.on('connection', (ws) => {
    const c = { ws, userId: null, seq: 0, sessionId: null };
    conns.add(c);
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: 41250 }, s: null, t: null }));
    const presence = (status) => {
      const shared = new Set();
      for (const [sid, ms] of members) if (ms.has(c.userId)) memberIds(sid).forEach((x) => shared.add(x));
      dispatchTo([...shared], 'PRESENCE_UPDATE', { user_id: c.userId, status });
    };
    ws.on('message', (raw) => {
      let f;
      try { f = JSON.parse(raw); } catch { ws.close(4002); return; }
      if (f.op === 1) { ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null })); return; }
      if (f.op === 2 || f.op === 6) {
        const a = tokens.get(f.d && f.d.token);
        if (!a) { ws.close(4004); return; }
        if (f.op === 6) { ws.send(JSON.stringify({ op: 9, d: { resumable: false }, s: null, t: null })); return; }
        c.userId = a.userId; c.sessionId = id();
        const mine = [...servers.values()].filter((s) => members.get(s.id).has(c.userId));
        const online = new Set([...conns].filter((x) => x.userId).map((x) => x.userId));
        c.seq += 1;
        ws.send(JSON.stringify({ op: 0, t: 'READY', s: c.seq, d: { v: 1, user: users.get(c.userId).user, session_id: c.sessionId, servers: mine.map(serverFull), presences: [...online].map((u) => ({ user_id: u, status: 'online' })), voice_states: [...voiceStates.values()] } }));
        presence('online');
        return;
      }
      if (!c.userId) { ws.close(4003); return; }
      if (f.op === 4) {
        const d = f.d || {};
        const st = { server_id: d.server_id, channel_id: d.channel_id || null, user_id: c.userId, voice_session_id: d.voice_session_id || id(), self_mute: !!d.self_mute, self_deaf: !!d.self_deaf, mute: false, deaf: false };
        if (st.channel_id) voiceStates.set(c.userId, st); else voiceStates.delete(c.userId);
        dispatchTo(memberIds(d.server_id), 'VOICE_STATE_UPDATE', st);
        return;
      }
      if (f.op === 12) { ws.send(JSON.stringify({ op: 14, d: { code: 4500, message: 'media server unavailable (mock)' }, s: null, t: null })); }
    });
    ws.on('close', (code) => {
      conns.delete(c);
      if (c.userId && ![...conns].some((x) => x.userId === c.userId)) presence('offline');
      if (c.userId && (code === 1000 || code === 1001) && voiceStates.has(c.userId)) {
        const st = { ...voiceStates.get(c.userId), channel_id: null };
        voiceStates.delete(c.userId);
        dispatchTo(memberIds(st.server_id), 'VOICE_STATE_UPDATE', st);
      }
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, close: () => new Promise((r) => { for (const c of conns) c.ws.terminate(); wss.close(); server.close(() => r()); }) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const webRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../web');
  const { url } = await startMockServer({ webRoot, port: Number(process.env.PORT || 0) });
  console.log(`mock confab on ${url}`);
}
