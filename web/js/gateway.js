// Gateway WebSocket client (docs/gateway.md).
//
// HELLO → IDENTIFY (or RESUME when we hold a session) → READY / RESUMED; heartbeats every
// heartbeat_interval (first one jittered); a missing HEARTBEAT_ACK or a dropped socket triggers
// a reconnect with exponential backoff and a RESUME. INVALID_SESSION → IDENTIFY.
// Subscribers: on('MESSAGE_CREATE', fn), on('*', fn(t, d)), onOp(13, fn), onStatus(fn).

export const Op = {
  DISPATCH: 0, HEARTBEAT: 1, IDENTIFY: 2, PRESENCE_UPDATE: 3, VOICE_STATE_UPDATE: 4,
  RESUME: 6, RECONNECT: 7, INVALID_SESSION: 9, HELLO: 10, HEARTBEAT_ACK: 11,
  VOICE_OFFER: 12, VOICE_ANSWER: 13, VOICE_ERROR: 14, VIDEO_SUBSCRIBE: 15, VOICE_E2EE_KEYS: 16,
  PRESENCE_SUBSCRIBE: 17,
};

// Close codes after which resuming is pointless: identify afresh.
const IDENTIFY_CODES = new Set([4003, 4007]);
const FATAL_CODES = new Set([4010, 4011, 4012, 4013]);

export class Gateway {
  constructor({ url, getToken, refreshToken, beforeAuth } = {}) {
    this.beforeAuth = beforeAuth;        // async () => void, e.g. refresh an expiring token
    this.url = url || Gateway.defaultUrl();
    this.getToken = getToken;            // () => access token
    this.refreshToken = refreshToken;    // async () => bool (called after 4004)
    this.ws = null;
    this.sessionId = null;
    this.seq = null;
    this.status = 'disconnected';        // disconnected | connecting | ready | reconnecting
    this._listeners = new Map();
    this._opListeners = new Map();
    this._statusListeners = new Set();
    this._hbTimer = null;
    this._hbAcked = true;
    this._backoff = 1000;
    this._reconnectTimer = null;
    this._closedByUser = false;
    this._authFailures = 0;
  }

  static defaultUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/api/v1/gateway`;
  }

  on(t, fn) {
    if (!this._listeners.has(t)) this._listeners.set(t, new Set());
    this._listeners.get(t).add(fn);
    return () => this._listeners.get(t).delete(fn);
  }
  onOp(op, fn) {
    if (!this._opListeners.has(op)) this._opListeners.set(op, new Set());
    this._opListeners.get(op).add(fn);
    return () => this._opListeners.get(op).delete(fn);
  }
  onStatus(fn) { this._statusListeners.add(fn); return () => this._statusListeners.delete(fn); }

  _setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    for (const fn of this._statusListeners) { try { fn(s); } catch (e) { console.error(e); } }
  }

  connect() {
    this._closedByUser = false;
    this._open();
  }

  /** Close for good (logout): 1000 ends the session and any voice connection server-side. */
  close() {
    this._closedByUser = true;
    clearTimeout(this._reconnectTimer);
    this._stopHeartbeat();
    if (this.ws) { try { this.ws.close(1000, 'logout'); } catch { /* ignore */ } }
    this.ws = null;
    this.sessionId = null;
    this.seq = null;
    this._setStatus('disconnected');
  }

  /** Drop the socket without ending the session (tests, network blips): we will RESUME. */
  simulateDrop() {
    if (this.ws) this.ws.close(4000, 'client drop');
  }

  send(op, d) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ op, d }));
    return true;
  }

  _open() {
    clearTimeout(this._reconnectTimer);
    this._setStatus(this.sessionId ? 'reconnecting' : 'connecting');
    let ws;
    try { ws = new WebSocket(this.url); } catch (e) { this._scheduleReconnect(); return; }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      this._handle(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._stopHeartbeat();
      if (this._closedByUser) return;
      this._onClose(ev.code);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  async _onClose(code) {
    if (FATAL_CODES.has(code)) { this._setStatus('disconnected'); return; }
    if (IDENTIFY_CODES.has(code)) { this.sessionId = null; this.seq = null; }
    if (code === 4004) {
      // Token rejected: refresh it, then identify again. Give up after a few failures.
      this.sessionId = null; this.seq = null;
      this._authFailures += 1;
      const ok = this.refreshToken && this._authFailures <= 3 ? await this.refreshToken() : false;
      if (!ok) { this._setStatus('disconnected'); this._emit('AUTH_FAILED', {}); return; }
    }
    this._setStatus(this.sessionId ? 'reconnecting' : 'connecting');
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    clearTimeout(this._reconnectTimer);
    const delay = this._backoff * (0.75 + Math.random() * 0.5);
    this._backoff = Math.min(this._backoff * 2, 30000);
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  _handle(frame) {
    const { op, d, s, t } = frame;
    switch (op) {
      case Op.HELLO: {
        this._startHeartbeat((d && d.heartbeat_interval) || 41250);
        const ws = this.ws;
        Promise.resolve(this.beforeAuth ? this.beforeAuth().catch(() => {}) : null).then(() => {
          if (this.ws !== ws) return;
          if (this.sessionId && this.seq != null) {
            this.send(Op.RESUME, { token: this.getToken(), session_id: this.sessionId, seq: this.seq });
          } else {
            this._identify();
          }
        });
        break;
      }
      case Op.HEARTBEAT_ACK:
        this._hbAcked = true;
        break;
      case Op.HEARTBEAT:
        this.send(Op.HEARTBEAT, { seq: this.seq });
        break;
      case Op.RECONNECT:
        if (this.ws) this.ws.close(4000, 'server asked to reconnect');
        break;
      case Op.INVALID_SESSION:
        this.sessionId = null;
        this.seq = null;
        if (d && d.resumable && this.ws) { /* never sent by confab; treat like non-resumable */ }
        setTimeout(() => this._identify(), 500 + Math.random() * 1000);
        break;
      case Op.DISPATCH:
        if (typeof s === 'number') this.seq = s;
        if (t === 'READY') {
          this.sessionId = d.session_id;
          this._backoff = 1000;
          this._authFailures = 0;
          this._setStatus('ready');
        } else if (t === 'RESUMED') {
          this._backoff = 1000;
          this._setStatus('ready');
        }
        this._emit(t, d);
        break;
      default:
        break;
    }
    const set = this._opListeners.get(op);
    if (set) for (const fn of set) { try { fn(d, frame); } catch (e) { console.error(e); } }
  }

  _identify() {
    this.send(Op.IDENTIFY, { token: this.getToken() });
  }

  _emit(t, d) {
    for (const key of [t, '*']) {
      const set = this._listeners.get(key);
      if (!set) continue;
      for (const fn of set) {
        try { key === '*' ? fn(t, d) : fn(d); } catch (e) { console.error(`handler for ${t} failed`, e); }
      }
    }
  }

  _startHeartbeat(interval) {
    this._stopHeartbeat();
    this._hbAcked = true;
    const beat = () => {
      if (!this._hbAcked) {
        // Zombied connection: reconnect and resume.
        if (this.ws) this.ws.close(4000, 'heartbeat not acknowledged');
        return;
      }
      this._hbAcked = false;
      this.send(Op.HEARTBEAT, { seq: this.seq });
    };
    this._hbTimer = setTimeout(() => {
      beat();
      this._hbTimer = setInterval(beat, interval);
    }, interval * Math.random());
  }

  _stopHeartbeat() {
    clearTimeout(this._hbTimer);
    clearInterval(this._hbTimer);
    this._hbTimer = null;
  }
}
