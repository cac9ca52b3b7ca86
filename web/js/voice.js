// Browser voice: the one implementation of voice in the web client (docs/gateway.md § Voice).
//
// One RTCPeerConnection (max-bundle). The client always offers: a sendonly transceiver with the
// microphone plus N recvonly audio transceivers (the listening slots). The server answers with
// op 13 (ICE-lite, its host candidate in the SDP). VOICE_RENEGOTIATE asks for more slots;
// VOICE_SLOTS says which user is heard on which mid; VOICE_SPEAKING drives speaking rings.
// A connection that stays failed/disconnected for >3 s, or a gateway RESUME, triggers a rejoin:
// op 4 with the same channel and our voice_session_id, then a fresh offer on a new pc.
//
// Video (docs/gateway.md § Video): every offer carries the video m-lines in a fixed order — the
// camera transceiver (simulcast q/h/f), the screen transceiver, then VIDEO_SLOTS recvonly video
// transceivers (the tiles). Camera and screen are sendonly with no track while off, so turning
// them on or off is a replaceTrack, never a renegotiation. VOICE_VIDEO_SLOTS maps recvonly mids
// to (user, track); VOICE_VIDEO_LAYERS says which encodings anyone watches; setVideoTiles()
// reports what the tile grid (video.js) shows with op 15.
//
// State for tests: window.confabVoice = this ({state, pc, slots, speaking, videoSlots, ...}).

import { Op } from './gateway.js';

const ANSWER_TIMEOUT_MS = 10000;
const RECONNECT_AFTER_MS = 3000;
const VOLUME_KEY = 'confab.voice.volumes';
const PREFS_KEY = 'confab.voice.prefs';

/** Recvonly video transceivers offered (the server uses up to its --max-video-tiles). */
export const VIDEO_SLOTS = 9;
/** Camera simulcast: quarter, half and full resolution of a 1280×720 capture, lowest first. */
const CAMERA_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
/** Least time between two op 15 tile reports. */
const TILES_MIN_INTERVAL_MS = 1500;
const CAMERA_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const SCREEN_CONSTRAINTS = { width: { max: 1920 }, height: { max: 1080 }, frameRate: { max: 15 } };

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
    // Where a join's time goes (tests and debugging): step → epoch ms (performance clock), set
    // once per join; firstPacket: mid → when its first RTP packet arrived (the track unmuted).
    this.timeline = {};
    this.firstPacket = {};
    this.listenOnly = false;

    // Video.
    this.cameraOn = false;
    this.screenOn = false;
    this.cameraStream = null;
    this.screenStream = null;
    this.videoSlots = {};        // mid -> {user_id, track} | null
    this.videoLayers = {};       // 'camera' | 'screen' -> active rids last asked for
    this.videoDenied = false;    // the server refused video (no VIDEO permission here)
    this.videoTiles = [];        // the last tile list sent with op 15
    this._micTx = null;          // the microphone's sendonly transceiver
    this._micChain = Promise.resolve();
    this._camTx = null;
    this._screenTx = null;
    this._tilesKey = null;
    this._tilesSentAt = 0;
    this._tilesTimer = null;
    this._layerChain = Promise.resolve();

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
    this._joinAttempt = 0;       // bumps on every join; a late answer to an older one is ignored
    this._generation = 0;        // bumps on every new pc; stale async work checks it
    this._videoClaimedAt = 0;    // when we last sent a state with camera or screen on

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
  /** The audio listening slots (recvonly video transceivers are the video tiles). */
  get recvTransceivers() {
    return this.pc ? this.pc.getTransceivers().filter((t) => t.direction === 'recvonly' && !t.stopped && isAudio(t)) : [];
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
    g.on('VOICE_CHANNEL_MOVE', (d) => this._onMoved(d));
    g.on('VOICE_SLOTS', (d) => this._onSlots(d));
    g.on('VOICE_VIDEO_SLOTS', (d) => this._onVideoSlots(d));
    g.on('VOICE_VIDEO_LAYERS', (d) => {
      if (!d || (d.track !== 'camera' && d.track !== 'screen') || !Array.isArray(d.active_rids)) return;
      if (d.channel_id && d.channel_id !== this.channelId) return;
      this.videoLayers[d.track] = d.active_rids.map(String);
      this._applyLayers(d.track);
    });
    g.on('VOICE_RENEGOTIATE', (d) => {
      if (!this.pc) return;
      const n = (d && d.audio_slots) | 0;
      this._enqueue(async (gen) => {
        if (gen !== this._generation || !this.pc) return;
        this._ensureRecvSlots(n);
        await this._negotiate(gen);
      });
    });
    // Who is speaking, in any channel of our servers, whether we are in voice or not: READY and
    // SERVER_CREATE voice states say who talks now, VOICE_SPEAKING follows changes. Joining a
    // channel keeps it, so someone already talking shows at once.
    g.on('VOICE_SPEAKING', (d) => {
      if (!d || !d.user_id) return;
      if (d.speaking) this.speaking[d.user_id] = true; else delete this.speaking[d.user_id];
      this._changed();
    });
    const seedSpeaking = (states) => {
      for (const v of states || []) if (v && v.channel_id && v.speaking) this.speaking[v.user_id] = true;
    };
    g.on('SERVER_CREATE', (d) => { seedSpeaking(d && d.voice_states); this._changed(); });
    // After a gateway drop our voice signalling may have missed events: rejoin.
    g.on('RESUMED', () => { if (this.channelId) this.rejoin('gateway resumed'); });
    let firstReady = true;
    g.on('READY', (d) => {
      this.speaking = {};
      seedSpeaking(d && d.voice_states);
      this._changed();
      if (firstReady) { firstReady = false; return; }
      if (this.channelId) this.rejoin('gateway re-identified');
    });
  }

  _onVoiceState(d) {
    if (!d) return;
    const self = this.getSelfId();
    if (d.user_id !== self) {
      // A participant left voice: stop showing them as speaking.
      if (!d.channel_id) delete this.speaking[d.user_id];
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
    if (d.channel_id && d.channel_id === this.channelId) this._followVideoState(d);
    if (!d.channel_id && this.channelId && this.state === 'connected' && !this._rejoining) {
      // The server removed us (another session took over, logout elsewhere, kicked).
      this._teardown();
      this._setState('idle', 'Disconnected from voice');
    }
  }

  /** A moderator moved us: the server already put us in the new channel; our media session in
   * the old one has ended, so offer again on a fresh pc (microphone and camera kept). */
  async _onMoved(d) {
    if (!d || !d.channel_id || !this.channelId || d.channel_id === this.channelId) return;
    this.serverId = d.server_id || this.serverId;
    this.channelId = d.channel_id;
    this.voiceSessionId = d.voice_session_id || null;
    this.slots = {};
    this._closePc();
    this._setState('connecting');
    await this._startPc(this._othersInChannel());
  }

  /** The server turned our camera or screen share off (the VIDEO permission was revoked while
   * on): stop sending, or every later op 4 claiming video would be refused. Echoes of our own
   * older updates are told apart by time. */
  _followVideoState(d) {
    if (Date.now() - this._videoClaimedAt < 2000) return;
    let off = false;
    if (this.cameraOn && d.self_video === false) {
      this._stopCamera();
      if (this._camTx) this._attach(this._camTx, null, null);
      off = true;
    }
    if (this.screenOn && d.self_stream === false) {
      this._stopScreen();
      if (this._screenTx) this._attach(this._screenTx, null, null);
      off = true;
    }
    if (off) {
      this.videoDenied = true;
      this.error = 'Video turned off: missing the VIDEO permission in this channel';
      this._changed();
    }
  }

  _onSlots(d) {
    const slots = {};
    for (const s of (d && d.slots) || []) if (s && s.mid != null) slots[String(s.mid)] = s.user_id || null;
    this.slots = slots;
    this._applyAudio();
    this._changed();
  }

  _onVideoSlots(d) {
    if (!d || (d.channel_id && d.channel_id !== this.channelId)) return;
    const slots = {};
    for (const s of d.slots || []) {
      if (!s || s.mid == null) continue;
      slots[String(s.mid)] = s.user_id && s.track ? { user_id: s.user_id, track: s.track } : null;
    }
    this.videoSlots = slots;
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
      self_video: this.cameraOn,
      self_stream: this.screenOn,
    };
    if (withSession && this.voiceSessionId) d.voice_session_id = this.voiceSessionId;
    if (this.cameraOn || this.screenOn) this._videoClaimedAt = Date.now();
    return this.gateway.send(Op.VOICE_STATE_UPDATE, d);
  }

  // ---------------------------------------------------------------- join / leave

  _mark(step) {
    if (this.timeline[step] == null) this.timeline[step] = performance.timeOrigin + performance.now();
  }

  async join(serverId, channelId) {
    if (this.channelId === channelId && this.pc && this.state !== 'error') return;
    this.timeline = {};
    this._mark('click');
    if (this.channelId) this._teardown({ keepStream: true });
    this.serverId = serverId;
    this.channelId = channelId;
    this.voiceSessionId = null;
    this.slots = {};
    const attempt = ++this._joinAttempt;
    this._setState('joining');
    // Nothing waits for what it does not need: the microphone, op 4 and the offer start at once.
    // The gateway handles a session's frames in order, so op 12 after op 4 finds us joined; the
    // microphone goes on its sender whenever it is ready (a permission prompt may take long).
    this._ensureMic().then(() => this._mark('mic'), (e) => {
      if (this._joinAttempt !== attempt) return;
      console.warn('microphone unavailable, joining listen-only', e);
      this.listenOnly = true;
      this.selfMute = true;
      if (this.channelId === channelId) this._sendState();
      this._changed();
    });
    const waiter = this._waitOwnState(channelId, 4000);
    if (!this._sendState()) {
      this._teardown();
      this._setState('error', 'Not connected to the gateway');
      return;
    }
    waiter.then((joined) => {
      this._mark('joined');
      // (Already in error: the offer's refusal carried this same reason.)
      if (this._joinAttempt !== attempt || !joined || !joined.error || this.state === 'error') return;
      // The join itself was refused (op 14 for op 4): its reason, not the offer's "not in a
      // voice channel" that follows it.
      if (this.channelId === channelId) { this._closePc(); this._teardown(); }
      this._setState('error', `${joined.error.message} (${joined.error.code})`);
    });
    await this._startPc(this._othersInChannel());
  }

  leave() {
    if (!this.channelId) return;
    const serverId = this.serverId;
    this.gateway.send(Op.VOICE_STATE_UPDATE, {
      server_id: serverId, channel_id: null, self_mute: this.selfMute, self_deaf: this.selfDeaf,
      self_video: false, self_stream: false,
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
    // The microphone is on the sender only while it may be heard (not muted, deafened or
    // push-to-talk released): a muted user sends nothing at all. Listen-only: never a track.
    const track = this.micTrack;
    this._micTx = pc.addTransceiver(track && this._micOn() ? track : 'audio', {
      direction: 'sendonly', streams: this.stream ? [this.stream] : [],
    });
    for (let i = 0; i < slotCount; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
    // Video m-lines, all in the first offer and always in this order (the server tells camera
    // from screen by it, and video_tracks in op 12 says it again).
    const cam = this.cameraTrack;
    this._camTx = pc.addTransceiver(cam || 'video', {
      direction: 'sendonly',
      streams: cam ? [this.cameraStream] : [],
      sendEncodings: CAMERA_ENCODINGS.map((e) => ({ ...e })),
    });
    const scr = this.screenTrack;
    this._screenTx = pc.addTransceiver(scr || 'video', { direction: 'sendonly', streams: scr ? [this.screenStream] : [] });
    for (let i = 0; i < VIDEO_SLOTS; i++) pc.addTransceiver('video', { direction: 'recvonly' });
    this.videoSlots = {};
    this._tilesKey = null;

    pc.addEventListener('track', (e) => {
      const mid = e.transceiver && e.transceiver.mid;
      if (mid != null && isAudio(e.transceiver)) {
        const first = () => {
          if (gen === this._generation && this.firstPacket[mid] == null) this.firstPacket[mid] = performance.timeOrigin + performance.now();
        };
        if (!e.track.muted) first(); else e.track.addEventListener('unmute', first, { once: true });
      }
      this._applyAudio();
    });
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
    const have = this.recvTransceivers.length;  // audio only
    for (let i = have; i < n; i++) this.pc.addTransceiver('audio', { direction: 'recvonly' });
  }

  async _negotiate(gen) {
    const pc = this.pc;
    if (!pc || gen !== this._generation) return;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this._mark('offer');
    // No waiting for ICE gathering (~130 ms in Chromium): the SFU is ICE-lite, it answers our
    // connectivity checks from wherever they come (peer-reflexive) and needs no candidates of
    // ours. The offer carries those gathered by now (none on a first offer).
    this._mark('gathered');
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
    const videoTracks = {};
    if (this._camTx && this._camTx.mid != null) videoTracks[this._camTx.mid] = 'camera';
    if (this._screenTx && this._screenTx.mid != null) videoTracks[this._screenTx.mid] = 'screen';
    if (!this.gateway.send(Op.VOICE_OFFER, { sdp: pc.localDescription.sdp, video_tracks: videoTracks })) {
      this._answerWaiter = null;
      throw new Error('Not connected to the gateway');
    }
    const answer = await answerP;
    this._mark('answer');
    if (gen !== this._generation || pc.signalingState === 'closed') return;
    await pc.setRemoteDescription({ type: 'answer', sdp: asFullIce(answer.sdp) });
    this._mark('remote');
    this.negotiations += 1;
    // Tiles chosen before this pc existed (a rejoin keeps them server-side).
    if (this._tilesKey === null && this.videoTiles.length) this._sendTiles(true);
    this._applyAudio();
    this._applyOutputDevice();
    this._changed();
  }

  _onPcState(pc, gen) {
    if (gen !== this._generation) return;
    if (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') this._mark('ice');
    const s = pc.connectionState;
    if (s === 'connected') {
      this._mark('connected');
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
    this._micTx = null;
    this._camTx = null;
    this._screenTx = null;
    this.videoSlots = {};
    this.videoLayers = {};
    for (const el of this._audioEls.values()) { el.srcObject = null; el.remove(); }
    this._audioEls.clear();
    this._stopStats();
  }

  _teardown({ keepStream = false } = {}) {
    this._closePc();
    if (!keepStream && this.stream) { for (const t of this.stream.getTracks()) t.stop(); this.stream = null; }
    // Video never outlives the channel: a new channel starts with camera and screen off.
    this._stopCamera();
    this._stopScreen();
    this.videoTiles = [];
    this._tilesKey = null;
    this.videoDenied = false;
    this.channelId = null;
    this.serverId = null;
    this.voiceSessionId = null;
    this.slots = {};
    // Our own ring goes with us; others' speaking stays known (VOICE_SPEAKING keeps coming).
    delete this.speaking[this.getSelfId()];
    this.quality = null;
  }

  // ---------------------------------------------------------------- audio out

  _applyAudio() {
    const pc = this.pc;
    if (!pc) return;
    for (const t of pc.getTransceivers()) {
      if (t.direction !== 'recvonly' || t.mid == null || !isAudio(t)) continue;
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

  _micOn() { return !this.selfMute && !this.selfDeaf && (!this.pushToTalk || this.pttActive); }

  /** Mute, deafen and push-to-talk: the track is disabled and taken off the sender
   * (replaceTrack(null): no RTP at all, where a disabled track still sends ~50 silent packets a
   * second). The server drops a muted participant's audio anyway. */
  _applyMicEnabled() {
    const t = this.micTrack;
    if (t) t.enabled = this._micOn();
    this._syncMicSender();
  }

  _syncMicSender() {
    this._micChain = this._micChain.then(async () => {
      const tx = this._micTx;
      if (!tx || !this.pc || this.pc.signalingState === 'closed') return;
      const want = this._micOn() ? this.micTrack : null;
      if (tx.sender.track !== want) await tx.sender.replaceTrack(want);
    }).catch((e) => console.warn('microphone replaceTrack', e));
    return this._micChain;
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

  // ---------------------------------------------------------------- video: camera and screen

  get cameraTrack() { return liveVideoTrack(this.cameraStream); }
  get screenTrack() { return liveVideoTrack(this.screenStream); }

  /**
   * Camera on/off. On: capture 1280×720, tell the server (op 4 self_video; refused without the
   * VIDEO permission), then put the track on the camera transceiver. Resolves to true when done.
   */
  async setCamera(on) {
    on = !!on;
    if (!this.channelId || on === this.cameraOn) return on === this.cameraOn;
    if (!on) {
      this._stopCamera();
      await this._attach(this._camTx, null, null);
      this._sendState();
      this._changed();
      return true;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: CAMERA_CONSTRAINTS, audio: false });
    } catch (e) {
      this.error = `Camera: ${e.message || e}`;
      this._changed();
      return false;
    }
    return this._startVideo('camera', stream);
  }
  toggleCamera() { return this.setCamera(!this.cameraOn); }

  /**
   * Screen share on/off. `stream` lets a caller supply the capture (e.g. a canvas
   * captureStream()); by default the browser's picker (getDisplayMedia) is shown.
   */
  async setScreen(on, { stream = null } = {}) {
    on = !!on;
    if (!this.channelId || on === this.screenOn) return on === this.screenOn;
    if (!on) {
      this._stopScreen();
      await this._attach(this._screenTx, null, null);
      this._sendState();
      this._changed();
      return true;
    }
    if (!stream) {
      try {
        stream = await navigator.mediaDevices.getDisplayMedia({ video: SCREEN_CONSTRAINTS, audio: false });
      } catch (e) {
        if (e && e.name !== 'NotAllowedError') { this.error = `Screen share: ${e.message || e}`; this._changed(); }
        return false;
      }
    }
    return this._startVideo('screen', stream);
  }
  toggleScreen() { return this.setScreen(!this.screenOn); }

  async _startVideo(kind, stream) {
    const channelId = this.channelId;
    const track = liveVideoTrack(stream);
    if (!track || !channelId) { for (const t of stream.getTracks()) t.stop(); return false; }
    if (kind === 'camera') { this.cameraStream = stream; this.cameraOn = true; } else {
      this.screenStream = stream;
      this.screenOn = true;
      // The browser's "Stop sharing" ends the track.
      track.addEventListener('ended', () => { if (this.screenStream === stream) this.setScreen(false); });
    }
    if (kind === 'screen' && 'contentHint' in track) track.contentHint = 'detail';
    const waiter = this._waitOwnState(channelId, 4000);
    this._sendState();
    const res = await waiter;
    if (this.channelId !== channelId) return false;
    if (res && res.error) {
      if (kind === 'camera') this._stopCamera(); else this._stopScreen();
      if (res.error.code === 4403) this.videoDenied = true;
      this.error = `${res.error.message} (${res.error.code})`;
      this._changed();
      return false;
    }
    await this._attach(kind === 'camera' ? this._camTx : this._screenTx, track, stream);
    this._changed();
    return true;
  }

  async _attach(tx, track, stream) {
    if (!tx || !this.pc) return;
    try {
      await tx.sender.replaceTrack(track);
      if (stream && tx.sender.setStreams) tx.sender.setStreams(stream);
    } catch (e) { console.warn('video replaceTrack', e); }
    this._applyLayers(tx === this._camTx ? 'camera' : 'screen');
  }

  _stopCamera() {
    if (this.cameraStream) for (const t of this.cameraStream.getTracks()) t.stop();
    this.cameraStream = null;
    this.cameraOn = false;
  }

  _stopScreen() {
    if (this.screenStream) for (const t of this.screenStream.getTracks()) t.stop();
    this.screenStream = null;
    this.screenOn = false;
  }

  /** Pauses the encodings nobody watches (VOICE_VIDEO_LAYERS), one setParameters at a time. */
  _applyLayers(kind) {
    this._layerChain = this._layerChain.then(async () => {
      const tx = kind === 'camera' ? this._camTx : this._screenTx;
      const rids = this.videoLayers[kind];
      if (!tx || !rids || !this.pc) return;
      const params = tx.sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      let changed = false;
      for (const enc of params.encodings) {
        // A track without simulcast has one encoding, named "" by the server.
        const want = enc.rid ? rids.includes(enc.rid) : rids.length > 0;
        if (enc.active !== want) { enc.active = want; changed = true; }
      }
      if (changed) await tx.sender.setParameters(params);
    }).catch((e) => console.warn('video setParameters', e));
    return this._layerChain;
  }

  /** The received track showing `userId`'s `track` ('camera' | 'screen'), if a slot has it. */
  videoTrackFor(userId, track) {
    if (!this.pc) return null;
    const mid = Object.keys(this.videoSlots).find((m) => {
      const s = this.videoSlots[m];
      return s && s.user_id === userId && s.track === track;
    });
    if (mid == null) return null;
    const t = this.pc.getTransceivers().find((x) => x.mid === mid);
    return t ? t.receiver.track : null;
  }

  /**
   * The tiles shown now, [{user_id, track, width, height}] in device pixels (op 15). Sent only
   * when it changed; the server replaces its previous list with it.
   */
  setVideoTiles(tiles) {
    // The server may allow fewer tiles (--max-video-tiles): VOICE_VIDEO_SLOTS lists only the
    // slots it uses.
    const max = Math.min(VIDEO_SLOTS, Object.keys(this.videoSlots).length || VIDEO_SLOTS);
    this.videoTiles = tiles.slice(0, max).map((t) => ({
      user_id: String(t.user_id), track: t.track,
      width: Math.max(0, Math.round(t.width)) || 0, height: Math.max(0, Math.round(t.height)) || 0,
    }));
    this._sendTiles(false);
  }

  _sendTiles(force) {
    if (!this.channelId || !this.pc) return;
    const key = JSON.stringify(this.videoTiles);
    if (!force && key === this._tilesKey) return;
    // op 15 shares the voice signalling budget (60 frames a minute): at most one every
    // TILES_MIN_INTERVAL_MS, the latest list going out when the interval is over.
    const wait = this._tilesSentAt + TILES_MIN_INTERVAL_MS - Date.now();
    if (wait > 0) {
      if (!this._tilesTimer) {
        this._tilesTimer = setTimeout(() => { this._tilesTimer = null; this._sendTiles(false); }, wait);
      }
      return;
    }
    if (this.gateway.send(Op.VIDEO_SUBSCRIBE, { tiles: this.videoTiles })) {
      this._tilesKey = key;
      this._tilesSentAt = Date.now();
    }
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
    this.stream = fresh;
    this._applyMicEnabled();  // puts the new track on the sender unless muted
    await this._micChain;
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

/**
 * The answer without `a=ice-lite`. Facing an ICE-lite peer, Chromium nominates a candidate pair
 * (USE-CANDIDATE) only in the check after the first successful one, ~50 ms later, and the SFU
 * (which waits for the nomination) holds its DTLS reply until then; facing a full agent it
 * nominates in its first check. The SFU answers checks either way and never sends its own, which
 * Chromium does not need: its own checks make the pair valid. Saves ~50 ms of every join.
 */
function asFullIce(sdp) { return sdp.replace(/^a=ice-lite\r?\n/m, ''); }

function isAudio(t) { return t.receiver && t.receiver.track && t.receiver.track.kind === 'audio'; }
function liveVideoTrack(stream) {
  const t = stream ? stream.getVideoTracks()[0] : null;
  return t && t.readyState === 'live' ? t : null;
}
function clamp01(v) { v = Number(v); return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1; }
function loadJson(key, dflt) {
  try { const v = JSON.parse(localStorage.getItem(key)); return v && typeof v === 'object' ? v : dflt; } catch { return dflt; }
}
function saveJson(key, v) { try { localStorage.setItem(key, JSON.stringify(v)); } catch { /* ignore */ } }
