// Browser voice: the one implementation of voice in the web client (docs/gateway.md § Voice).
//
// One RTCPeerConnection (max-bundle). The client always offers: a sendonly transceiver with the
// microphone plus N recvonly audio transceivers (the listening slots). The server answers with
// op 13 (ICE-lite, its host candidate in the SDP). VOICE_RENEGOTIATE asks for more slots;
// VOICE_SLOTS says which user is heard on which mid; VOICE_SPEAKING drives speaking rings.
// A connection that stays failed/disconnected for >3 s, or a gateway RESUME, triggers a rejoin:
// op 4 with the same channel and our voice_session_id, then a fresh offer on a new pc.
//
// State for tests: window.confabVoice = this ({state, pc, slots, speaking, ...}).

import { Op } from './gateway.js';

const ICE_GATHER_TIMEOUT_MS = 1000;
const ANSWER_TIMEOUT_MS = 10000;
const RECONNECT_AFTER_MS = 3000;
const VOLUME_KEY = 'confab.voice.volumes';
const PREFS_KEY = 'confab.voice.prefs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


// The server's default --max-audio-slots: in a large channel everyone hears the loudest few, so a
// join never offers thousands of transceivers.
const INITIAL_SLOT_CAP = 3;
export class Voice {
  constructor({ gateway, getSelfId, getVoiceStates }) {
    this.gateway = gateway;
    this.getSelfId = getSelfId;
    this.getVoiceStates = getVoiceStates || (() => []);

    this.state = 'idle';  // idle | joining | connecting | connected | reconnecting | error
    this.error = null;
    this.serverId = null;
    this.channelId = null;
    this.voiceSessionId = null;
    this.pc = null;
    this.stream = null;          // local microphone MediaStream
    this.slots = {};             // mid -> user_id | null
    this.speaking = {};          // user_id -> true
    this.selfMute = false;
    this.selfDeaf = false;
    this.muteBeforeDeaf = false;
    this.quality = null;         // {rttMs, lossPercent, level}
    this.negotiations = 0;       // completed offer/answer rounds (tests)
    this.listenOnly = false;

    const prefs = loadJson(PREFS_KEY, {});
    this.inputDeviceId = prefs.inputDeviceId || '';
    this.outputDeviceId = prefs.outputDeviceId || '';
    this.pushToTalk = !!prefs.pushToTalk;
    this.pushToTalkKey = prefs.pushToTalkKey || 'KeyV';
    this.pttActive = false;
    this.volumes = loadJson(VOLUME_KEY, {});  // user_id -> 0..1

    this._listeners = new Set();
    this._audioEls = new Map();  // mid -> HTMLAudioElement
    this._answerWaiter = null;
    this._ownStateWaiter = null;
    this._chain = Promise.resolve();
    this._badTimer = null;
    this._statsTimer = null;
    this._lastStats = null;
    this._rejoining = false;
    this._generation = 0;        // bumps on every new pc; stale async work checks it

    this._audioRoot = document.createElement('div');
    this._audioRoot.id = 'voice-audio';
    this._audioRoot.hidden = true;
    document.body.append(this._audioRoot);

    this._wireGateway();
    this._wireKeys();
  }

  // ---------------------------------------------------------------- subscriptions

  onChange(fn) { this._listeners.add(fn); return () => this._listeners.delete(fn); }
  _changed() {
    for (const fn of this._listeners) { try { fn(this); } catch (e) { console.error(e); } }
  }
  _setState(s, error = null) {
    this.state = s;
    this.error = error;
    this._changed();
  }

  get connected() { return this.state === 'connected'; }
  get inVoice() { return !!this.channelId; }
  get recvTransceivers() {
    return this.pc ? this.pc.getTransceivers().filter((t) => t.direction === 'recvonly' && !t.stopped) : [];
  }

  // ---------------------------------------------------------------- gateway wiring

  _wireGateway() {
    const g = this.gateway;
    g.onOp(Op.VOICE_ANSWER, (d) => {
      if (d && d.voice_session_id) this.voiceSessionId = d.voice_session_id;
      const w = this._answerWaiter;
      this._answerWaiter = null;
      if (w) w.resolve(d);
    });
    g.onOp(Op.VOICE_ERROR, (d) => {
      const msg = (d && d.message) || 'voice error';
      const w = this._answerWaiter;
      this._answerWaiter = null;
      if (w) w.reject(Object.assign(new Error(msg), { code: d && d.code }));
      else if (this._ownStateWaiter) {
        // The join itself was refused (op 4 → op 14).
        const sw = this._ownStateWaiter;
        this._ownStateWaiter = null;
        sw.resolve({ error: { code: d && d.code, message: msg } });
      } else { this.error = `${msg} (${d && d.code})`; this._changed(); }
    });
    g.on('VOICE_STATE_UPDATE', (d) => this._onVoiceState(d));
    g.on('VOICE_SLOTS', (d) => this._onSlots(d));
    g.on('VOICE_RENEGOTIATE', (d) => {
      if (!this.pc) return;
      const n = (d && d.audio_slots) | 0;
      this._enqueue(async (gen) => {
        if (gen !== this._generation || !this.pc) return;
        this._ensureRecvSlots(n);
        await this._negotiate(gen);
      });
    });
    g.on('VOICE_SPEAKING', (d) => {
      if (!d || !d.user_id) return;
      if (d.speaking) this.speaking[d.user_id] = true; else delete this.speaking[d.user_id];
      this._changed();
    });
    // After a gateway drop our voice signalling may have missed events: rejoin.
    g.on('RESUMED', () => { if (this.channelId) this.rejoin('gateway resumed'); });
    let firstReady = true;
    g.on('READY', () => {
      if (firstReady) { firstReady = false; return; }
      if (this.channelId) this.rejoin('gateway re-identified');
    });
  }

  _onVoiceState(d) {
    if (!d) return;
    const self = this.getSelfId();
    if (d.user_id !== self) {
      // A participant left our channel: stop showing them as speaking.
      if (d.channel_id !== this.channelId) delete this.speaking[d.user_id];
      this._changed();
      return;
    }
    if (this._ownStateWaiter && d.channel_id === this._ownStateWaiter.channelId) {
      const w = this._ownStateWaiter;
      this._ownStateWaiter = null;
      w.resolve(d);
    }
    if (d.channel_id && d.channel_id === this.channelId && d.voice_session_id) {
      this.voiceSessionId = d.voice_session_id;
    }
    if (!d.channel_id && this.channelId && this.state === 'connected' && !this._rejoining) {
      // The server removed us (another session took over, logout elsewhere, kicked).
      this._teardown();
      this._setState('idle', 'Disconnected from voice');
    }
  }

  _onSlots(d) {
    const slots = {};
    for (const s of (d && d.slots) || []) if (s && s.mid != null) slots[String(s.mid)] = s.user_id || null;
    this.slots = slots;
    this._applyAudio();
    this._changed();
  }

  _waitOwnState(channelId, timeoutMs) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { if (this._ownStateWaiter === w) this._ownStateWaiter = null; resolve(null); }, timeoutMs);
      const w = { channelId, resolve: (d) => { clearTimeout(timer); resolve(d); } };
      this._ownStateWaiter = w;
    });
  }

  _sendState({ withSession = false } = {}) {
    const d = {
      server_id: this.serverId,
      channel_id: this.channelId,
      self_mute: this.selfMute,
      self_deaf: this.selfDeaf,
    };
    if (withSession && this.voiceSessionId) d.voice_session_id = this.voiceSessionId;
    return this.gateway.send(Op.VOICE_STATE_UPDATE, d);
  }

  // ---------------------------------------------------------------- join / leave

  async join(serverId, channelId) {
    if (this.channelId === channelId && this.pc && this.state !== 'error') return;
    if (this.channelId) this._teardown({ keepStream: true });
    this.serverId = serverId;
    this.channelId = channelId;
    this.voiceSessionId = null;
    this.speaking = {};
    this.slots = {};
    this._setState('joining');
    try {
      await this._ensureMic();
    } catch (e) {
      console.warn('microphone unavailable, joining listen-only', e);
      this.listenOnly = true;
      this.selfMute = true;
    }
    if (this.channelId !== channelId) return;  // left meanwhile
    const waiter = this._waitOwnState(channelId, 4000);
    if (!this._sendState()) {
      this._teardown();
      this._setState('error', 'Not connected to the gateway');
      return;
    }
    const joined = await waiter;
    if (this.channelId !== channelId) return;
    if (joined && joined.error) {
      this._teardown();
      this._setState('error', `${joined.error.message} (${joined.error.code})`);
      return;
    }
    await this._startPc(this._othersInChannel());
  }

  leave() {
    if (!this.channelId) return;
    const serverId = this.serverId;
    this.gateway.send(Op.VOICE_STATE_UPDATE, {
      server_id: serverId, channel_id: null, self_mute: this.selfMute, self_deaf: this.selfDeaf,
    });
    this._teardown();
    this._setState('idle');
  }

  /** Rejoin after a network blip: same channel, same voice_session_id, fresh pc and offer. */
  async rejoin(reason = '') {
    if (!this.channelId || this._rejoining) return;
    this._rejoining = true;
    const channelId = this.channelId;
    const slots = Math.max(this.recvTransceivers.length, this._othersInChannel());
    console.info('voice: rejoining', reason);
    this._setState('reconnecting');
    this._closePc();
    try {
      for (let attempt = 0; attempt < 10 && this.channelId === channelId; attempt++) {
        if (this.gateway.status !== 'ready') { await sleep(500); continue; }
        try { await this._ensureMic(); } catch { this.listenOnly = true; }
        const waiter = this._waitOwnState(channelId, 4000);
        if (!this._sendState({ withSession: true })) { await sleep(500); continue; }
        const joined = await waiter;
        if (this.channelId !== channelId) return;
        if (joined && joined.error) { await sleep(1000 * (attempt + 1)); continue; }
        const ok = await this._startPc(slots);
        if (ok) return;
        await sleep(1000 * (attempt + 1));
      }
    } finally {
      this._rejoining = false;
    }
  }

  /** Listening slots to offer at first: one per other participant, at most the server's usual
   * loudest-speaker limit (it asks for more with VOICE_RENEGOTIATE if it allows more). */
  _othersInChannel() {
    const self = this.getSelfId();
    const others = this.getVoiceStates(this.channelId).filter((s) => s.user_id !== self).length;
    return Math.min(others, INITIAL_SLOT_CAP);
  }

  /** Users heard right now (on a listening slot), for the "heard" marks in the channel list. */
  heardUsers() { return new Set(Object.values(this.slots).filter(Boolean)); }

  async _ensureMic() {
    const live = this.stream && this.stream.getAudioTracks().some((t) => t.readyState === 'live');
    if (live) return;
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: this._audioConstraints(), video: false });
    this.listenOnly = false;
    this._applyMicEnabled();
  }

  _audioConstraints() {
    const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (this.inputDeviceId) c.deviceId = { exact: this.inputDeviceId };
    return c;
  }

  get micTrack() { return this.stream ? this.stream.getAudioTracks()[0] || null : null; }

  async _startPc(slotCount) {
    const gen = ++this._generation;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    this._setState(this.state === 'reconnecting' ? 'reconnecting' : 'connecting');
    const track = this.micTrack;
    if (track) pc.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] });
    else pc.addTransceiver('audio', { direction: 'sendonly' });  // listen-only: nothing is sent
    for (let i = 0; i < slotCount; i++) pc.addTransceiver('audio', { direction: 'recvonly' });

    pc.addEventListener('track', () => this._applyAudio());
    pc.addEventListener('connectionstatechange', () => this._onPcState(pc, gen));
    pc.addEventListener('iceconnectionstatechange', () => this._onPcState(pc, gen));

    try {
      await this._enqueue((g) => this._negotiate(g), gen);
    } catch (e) {
      if (gen !== this._generation) return false;
      console.warn('voice negotiation failed', e);
      this._closePc();
      if (e && (e.code === 4403 || e.code === 4404)) {
        this.channelId = null;
        this._teardown();
      }
      this._setState('error', e.message || String(e));
      return false;
    }
    this._startStats();
    return true;
  }

  _enqueue(fn, genOverride) {
    const gen = genOverride ?? this._generation;
    const p = this._chain.then(() => fn(gen));
    this._chain = p.catch(() => {});
    return p;
  }

  _ensureRecvSlots(n) {
    const have = this.recvTransceivers.length;
    for (let i = have; i < n; i++) this.pc.addTransceiver('audio', { direction: 'recvonly' });
  }

  async _negotiate(gen) {
    const pc = this.pc;
    if (!pc || gen !== this._generation) return;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (gen !== this._generation) return;
    const answerP = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._answerWaiter && this._answerWaiter.timer === timer) this._answerWaiter = null;
        reject(new Error('No answer from the voice server'));
      }, ANSWER_TIMEOUT_MS);
      this._answerWaiter = {
        timer,
        resolve: (d) => { clearTimeout(timer); resolve(d); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
    if (!this.gateway.send(Op.VOICE_OFFER, { sdp: pc.localDescription.sdp })) {
      this._answerWaiter = null;
      throw new Error('Not connected to the gateway');
    }
    const answer = await answerP;
    if (gen !== this._generation || pc.signalingState === 'closed') return;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    this.negotiations += 1;
    this._applyAudio();
    this._applyOutputDevice();
    this._changed();
  }

  _onPcState(pc, gen) {
    if (gen !== this._generation) return;
    const s = pc.connectionState;
    if (s === 'connected') {
      clearTimeout(this._badTimer);
      this._badTimer = null;
      if (this.state !== 'connected') this._setState('connected');
    } else if (s === 'failed' || s === 'disconnected') {
      if (!this._badTimer) {
        this._badTimer = setTimeout(() => {
          this._badTimer = null;
          if (gen !== this._generation) return;
          const now = pc.connectionState;
          if (now === 'failed' || now === 'disconnected') this.rejoin(`pc ${now} for >3 s`);
        }, RECONNECT_AFTER_MS);
      }
      if (this.state === 'connected') this._setState('reconnecting');
    }
  }

  _closePc() {
    this._generation += 1;
    clearTimeout(this._badTimer);
    this._badTimer = null;
    if (this._answerWaiter) { const w = this._answerWaiter; this._answerWaiter = null; w.reject(new Error('closed')); }
    if (this.pc) { try { this.pc.close(); } catch { /* ignore */ } }
    this.pc = null;
    for (const el of this._audioEls.values()) { el.srcObject = null; el.remove(); }
    this._audioEls.clear();
    this._stopStats();
  }

  _teardown({ keepStream = false } = {}) {
    this._closePc();
    if (!keepStream && this.stream) { for (const t of this.stream.getTracks()) t.stop(); this.stream = null; }
    this.channelId = null;
    this.serverId = null;
    this.voiceSessionId = null;
    this.slots = {};
    this.speaking = {};
    this.quality = null;
  }

  // ---------------------------------------------------------------- audio out

  _applyAudio() {
    const pc = this.pc;
    if (!pc) return;
    for (const t of pc.getTransceivers()) {
      if (t.direction !== 'recvonly' || t.mid == null) continue;
      let el = this._audioEls.get(t.mid);
      if (!el) {
        el = document.createElement('audio');
        el.autoplay = true;
        el.dataset.mid = t.mid;
        el.srcObject = new MediaStream([t.receiver.track]);
        this._audioRoot.append(el);
        this._audioEls.set(t.mid, el);
        if (this.outputDeviceId && el.setSinkId) el.setSinkId(this.outputDeviceId).catch(() => {});
        el.play().catch(() => {});
      }
      const user = this.slots[t.mid] || null;
      el.dataset.userId = user || '';
      el.muted = this.selfDeaf;
      el.volume = user && this.volumes[user] != null ? clamp01(this.volumes[user]) : 1;
    }
  }

  userForMid(mid) { return this.slots[mid] || null; }

  setUserVolume(userId, v) {
    this.volumes[userId] = clamp01(v);
    saveJson(VOLUME_KEY, this.volumes);
    this._applyAudio();
    this._changed();
  }
  getUserVolume(userId) { return this.volumes[userId] != null ? this.volumes[userId] : 1; }

  // ---------------------------------------------------------------- mute / deafen / PTT

  _applyMicEnabled() {
    const t = this.micTrack;
    if (!t) return;
    t.enabled = !this.selfMute && !this.selfDeaf && (!this.pushToTalk || this.pttActive);
  }

  setMute(muted) {
    this.selfMute = !!muted;
    if (!this.selfMute && this.selfDeaf) { this.selfDeaf = false; this._applyAudio(); }
    this._applyMicEnabled();
    if (this.channelId) this._sendState();
    this._changed();
  }
  toggleMute() { this.setMute(!this.selfMute); }

  setDeaf(deaf) {
    deaf = !!deaf;
    if (deaf === this.selfDeaf) return;
    if (deaf) { this.muteBeforeDeaf = this.selfMute; this.selfMute = true; }
    else this.selfMute = this.muteBeforeDeaf;
    this.selfDeaf = deaf;
    this._applyMicEnabled();
    this._applyAudio();
    if (this.channelId) this._sendState();
    this._changed();
  }
  toggleDeaf() { this.setDeaf(!this.selfDeaf); }

  setPushToTalk(enabled, key) {
    this.pushToTalk = !!enabled;
    if (key) this.pushToTalkKey = key;
    this.pttActive = false;
    this._savePrefs();
    this._applyMicEnabled();
    this._changed();
  }

  _wireKeys() {
    const typing = (e) => {
      const el = e.target;
      return el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.isContentEditable);
    };
    window.addEventListener('keydown', (e) => {
      if (!this.pushToTalk || e.code !== this.pushToTalkKey || typing(e) || this.pttActive) return;
      this.pttActive = true;
      this._applyMicEnabled();
      this._changed();
    });
    window.addEventListener('keyup', (e) => {
      if (!this.pushToTalk || e.code !== this.pushToTalkKey) return;
      this.pttActive = false;
      this._applyMicEnabled();
      this._changed();
    });
    window.addEventListener('blur', () => {
      if (this.pttActive) { this.pttActive = false; this._applyMicEnabled(); this._changed(); }
    });
  }

  // ---------------------------------------------------------------- devices

  async devices() {
    try {
      const list = await navigator.mediaDevices.enumerateDevices();
      return {
        inputs: list.filter((d) => d.kind === 'audioinput'),
        outputs: list.filter((d) => d.kind === 'audiooutput'),
        canPickOutput: typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype,
      };
    } catch {
      return { inputs: [], outputs: [], canPickOutput: false };
    }
  }

  async setInputDevice(deviceId) {
    this.inputDeviceId = deviceId || '';
    this._savePrefs();
    if (!this.stream) return;
    const old = this.stream;
    const fresh = await navigator.mediaDevices.getUserMedia({ audio: this._audioConstraints(), video: false });
    const track = fresh.getAudioTracks()[0];
    this.stream = fresh;
    this._applyMicEnabled();
    if (this.pc) {
      const sender = this.pc.getTransceivers().find((t) => t.direction === 'sendonly')?.sender;
      if (sender) await sender.replaceTrack(track);
    }
    for (const t of old.getTracks()) t.stop();
    this._changed();
  }

  setOutputDevice(deviceId) {
    this.outputDeviceId = deviceId || '';
    this._savePrefs();
    this._applyOutputDevice();
  }

  _applyOutputDevice() {
    for (const el of this._audioEls.values()) {
      if (el.setSinkId) el.setSinkId(this.outputDeviceId || '').catch((e) => console.warn('setSinkId', e));
    }
  }

  _savePrefs() {
    saveJson(PREFS_KEY, {
      inputDeviceId: this.inputDeviceId, outputDeviceId: this.outputDeviceId,
      pushToTalk: this.pushToTalk, pushToTalkKey: this.pushToTalkKey,
    });
  }

  // ---------------------------------------------------------------- connection quality

  _startStats() {
    this._stopStats();
    this._statsTimer = setInterval(() => this._pollStats(), 2000);
  }
  _stopStats() {
    clearInterval(this._statsTimer);
    this._statsTimer = null;
    this._lastStats = null;
  }

  async _pollStats() {
    const pc = this.pc;
    if (!pc) return;
    let report;
    try { report = await pc.getStats(); } catch { return; }
    let rtt = null;
    let received = 0;
    let lost = 0;
    let remoteLoss = null;
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime != null) {
        rtt = s.currentRoundTripTime;
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        received += s.packetsReceived || 0;
        lost += Math.max(0, s.packetsLost || 0);
      } else if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') {
        if (s.fractionLost != null) remoteLoss = s.fractionLost;
        if (rtt == null && s.roundTripTime != null) rtt = s.roundTripTime;
      }
    });
    const prev = this._lastStats;
    this._lastStats = { received, lost };
    let loss = remoteLoss != null ? remoteLoss * 100 : 0;
    if (prev) {
      const dr = received - prev.received;
      const dl = lost - prev.lost;
      if (dr + dl > 0) loss = Math.max(loss, (100 * dl) / (dr + dl));
    }
    const rttMs = rtt != null ? Math.round(rtt * 1000) : null;
    let level = 'good';
    if ((rttMs != null && rttMs > 250) || loss > 5) level = 'bad';
    else if ((rttMs != null && rttMs > 120) || loss > 1) level = 'ok';
    this.quality = { rttMs, lossPercent: Math.round(loss * 10) / 10, level };
    this._changed();
  }
}

function waitIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function clamp01(v) { v = Number(v); return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1; }
function loadJson(key, dflt) {
  try { const v = JSON.parse(localStorage.getItem(key)); return v && typeof v === 'object' ? v : dflt; } catch { return dflt; }
}
function saveJson(key, v) { try { localStorage.setItem(key, JSON.stringify(v)); } catch { /* ignore */ } }
