// Browser voice: the one implementation of voice in the web client (docs/gateway.md § Voice).
//
// One RTCPeerConnection (max-bundle). The client always offers: a sendonly transceiver with the
// microphone plus N recvonly audio transceivers (the listening slots). The server answers with
// op 13 (ICE-lite, its host candidate in the SDP). VOICE_RENEGOTIATE asks for more slots;
// VOICE_SLOTS says which user is heard on which mid; VOICE_SPEAKING drives speaking rings.
// A connection that stays failed/disconnected for >3 s, or a gateway RESUME, triggers a rejoin:
// op 4 with the same channel and our voice_session_id, then a fresh offer on a new pc.
//
// This file is the connection and signalling core. Voice's other parts are methods of the same
// class, written in their own modules and copied onto Voice.prototype below: devices, saved
// preferences, per-user volume and push to talk in voice-devices.js; camera, screen share and
// the video slots in voice-video.js (the tile grid that shows them is video.js); end-to-end
// encryption of e2ee channels in voice-e2ee.js (with its frame worker, e2ee-worker.js).
//
// State for tests: window.confabVoice = this ({state, pc, slots, speaking, videoSlots, ...}).

import { Op } from './gateway.js';
import { VoiceDevices, initPrefs, clamp01 } from './voice-devices.js';
import { VoiceVideo, initVideo } from './voice-video.js';
import { VoiceE2ee, initE2ee } from './voice-e2ee.js';

const ANSWER_TIMEOUT_MS = 10000;
const RECONNECT_AFTER_MS = 3000;
// Media failures in a row, with the gateway up all along (so not an outage of the client's
// network), after which we stop retrying and say why instead of spinning.
const MAX_MEDIA_FAILURES = 4;

/** Why the microphone could not be had, and what to do about it (the user listens meanwhile). */
export function micProblem(e) {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return `Microphone unavailable: this page is not on HTTPS (${location.origin}). Browsers allow `
      + 'the microphone only on https:// pages or localhost: open this server\'s https:// address, '
      + 'or ask its admin to set one up. You can listen meanwhile.';
  }
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Microphone blocked: allow it for this site (the icon at the left of the address bar), '
        + 'then join the channel again. You can listen meanwhile.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone found: connect one or choose another input in the voice settings, then '
        + 'join the channel again. You can listen meanwhile.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone could not start (another program may be using it): close that program, '
        + 'then join the channel again. You can listen meanwhile.';
    default:
      return `Microphone unavailable (${(e && (e.message || e.name)) || e}). You can listen meanwhile.`;
  }
}

/** Why media did not connect, naming the server's announced address from the answer's SDP. */
export function mediaProblem(sdp, { turn = false } = {}) {
  const m = /a=candidate:\S+ \d+ (udp|tcp) \d+ (\S+) (\d+) typ host/i.exec(sdp || '');
  const where = m ? ` (${m[2]} port ${m[3]}, ${m[1].toUpperCase()})` : '';
  const relay = turn
    ? ' The TURN relay did not get through either.'
    : ' This server has no TURN relay for networks that block UDP (its admin can set one up).';
  return `Could not connect to the voice server${where}: ICE failed. Your network may block `
    + `UDP, or the server announces an address you cannot reach.${relay} Try another network (a `
    + 'phone hotspot, say) and join again; the server\'s admin can check it with `confab doctor`.';
}

/** Set to '1' in localStorage to send all voice through the TURN relay (for checking TURN). */
export const FORCE_RELAY_KEY = 'confab.voice.forceRelay';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


// The server's default --max-audio-slots: in a large channel everyone hears the loudest few, so a
// join never offers thousands of transceivers.
const INITIAL_SLOT_CAP = 3;
export class Voice {
  constructor({ gateway, getSelfId, getVoiceStates, getIceServers, isE2ee }) {
    this.gateway = gateway;
    this.isE2ee = isE2ee || null;
    this.getSelfId = getSelfId;
    this.getVoiceStates = getVoiceStates || (() => []);
    this.getIceServers = getIceServers || null;
    this._ice = null;            // { servers, expiresAt } from GET /voice/ice-servers
    this._icePending = null;

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
    this.soundTrack = null;      // set by the soundboard while a sound plays (setSoundTrack)
    this.soundUnmute = false;    // self-mute lifted on the server while that sound plays

    this._micTx = null;          // the microphone's sendonly transceiver
    this._micChain = Promise.resolve();
    initVideo(this);             // camera, screen, video slots (voice-video.js)
    initPrefs(this);             // devices, push to talk, volumes (voice-devices.js)

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

    this._audioRoot = document.createElement('div');
    this._audioRoot.id = 'voice-audio';
    this._audioRoot.hidden = true;
    document.body.append(this._audioRoot);

    this._wireGateway();
    initE2ee(this);              // after _wireGateway: our own voice state is taken in first
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
    g.on('VOICE_RECONNECT', (d) => this._onMediaMoved(d));
    g.on('VOICE_SLOTS', (d) => this._onSlots(d));
    g.on('VOICE_VIDEO_SLOTS', (d) => this._onVideoSlots(d));
    g.on('VOICE_VIDEO_LAYERS', (d) => this._onVideoLayers(d));
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
    // A voice session of ours that another one replaced (a rejoin through another node of a
    // cluster) ending is not our leaving.
    const stale = d.voice_session_id && this.voiceSessionId && d.voice_session_id !== this.voiceSessionId;
    if (!d.channel_id && !stale && this.channelId && this.state === 'connected' && !this._rejoining) {
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

  /** Our media node died or drains (a cluster): the server kept our voice session and places
   * the next offer on a live node, so offer again on a fresh pc (microphone and camera kept). */
  async _onMediaMoved(d) {
    if (!d || !this.channelId || d.channel_id !== this.channelId || this._rejoining) return;
    const slots = Math.max(this.recvTransceivers.length, this._othersInChannel());
    this.slots = {};
    this._closePc();
    this._setState('reconnecting');
    const ok = await this._startPc(slots);
    if (!ok && this.channelId === d.channel_id) this.rejoin('media node moved');
  }

  _onSlots(d) {
    // Voice slots (who is heard) apart from the slots carrying a watched screen share's sound.
    const slots = {};
    const streams = {};
    for (const s of (d && d.slots) || []) {
      if (!s || s.mid == null) continue;
      const mid = String(s.mid);
      if (s.stream && s.user_id) { streams[mid] = String(s.user_id); slots[mid] = null; } else slots[mid] = s.user_id || null;
    }
    this.slots = slots;
    this.streamSlots = streams;
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
      self_mute: this.selfMute && !this.soundUnmute,
      self_deaf: this.selfDeaf,
      self_video: this.cameraOn,
      self_stream: this.screenOn,
    };
    if (withSession && this.voiceSessionId) d.voice_session_id = this.voiceSessionId;
    const e2ee = this._e2eeDecl();
    if (e2ee) d.e2ee = e2ee;
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
    this._mediaFailures = 0;
    this._mark('click');
    if (this.channelId) this._teardown({ keepStream: true });
    this.serverId = serverId;
    this.channelId = channelId;
    this.voiceSessionId = null;
    this.slots = {};
    const attempt = ++this._joinAttempt;
    this._setState('joining');
    // An encrypted channel: the identity key must be at hand for op 4 (IndexedDB, ~ms).
    try { await this._e2eePrepare(channelId); } catch (e) {
      this._teardown();
      this._setState('error', `End-to-end encryption unavailable: ${e.message || e}`);
      return;
    }
    if (this._joinAttempt !== attempt) return;
    this._iceServers();  // fetched while op 4 and the microphone are under way
    // Nothing waits for what it does not need: the microphone, op 4 and the offer start at once.
    // The gateway handles a session's frames in order, so op 12 after op 4 finds us joined; the
    // microphone goes on its sender whenever it is ready (a permission prompt may take long).
    this._ensureMic().then(() => this._mark('mic'), (e) => {
      if (this._joinAttempt !== attempt) return;
      console.warn('microphone unavailable, joining listen-only', e);
      this.listenOnly = true;
      this.selfMute = true;
      if (this.channelId === channelId) this._sendState();
      this.error = micProblem(e);
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
    if (!this.channelId) return;
    // Asked again while rejoining (the gateway identified again meanwhile, maybe on another
    // node that never saw our op 4): the attempt under way starts over instead of offering.
    if (this._rejoining) { this._rejoinAgain = true; return; }
    this._rejoining = true;
    const channelId = this.channelId;
    const slots = Math.max(this.recvTransceivers.length, this._othersInChannel());
    console.info('voice: rejoining', reason);
    this._setState('reconnecting');
    this._closePc();
    try {
      for (let attempt = 0; attempt < 10 && this.channelId === channelId; attempt++) {
        this._rejoinAgain = false;
        if (this.gateway.status !== 'ready') { await sleep(500); continue; }
        try { await this._ensureMic(); } catch { this.listenOnly = true; }
        const waiter = this._waitOwnState(channelId, 4000);
        if (!this._sendState({ withSession: true })) { await sleep(500); continue; }
        const joined = await waiter;
        if (this.channelId !== channelId) return;
        if (this._rejoinAgain) continue;
        if (joined && joined.error) { await sleep(1000 * (attempt + 1)); continue; }
        const ok = await this._startPc(slots);
        if (ok && !this._rejoinAgain) return;
        if (!ok) await sleep(1000 * (attempt + 1));
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
    await this._attachGraph();  // voice-devices.js: suppression, gate and meter
    this._applyMicEnabled();
  }

  get micTrack() { return this.stream ? this.stream.getAudioTracks()[0] || null : null; }
  /** What goes on the sender: the processed track (voice-audio.js) while its graph runs, else
   * the microphone's own. */
  get sendTrack() {
    const g = this.micGraph;
    return g && g.running && this.micTrack ? g.track : this.micTrack;
  }

  /** The TURN servers for a new pc, reused until a minute before their credentials expire.
   * [] when the server has none, or when asking fails (direct UDP is tried anyway). */
  _iceServers() {
    const c = this._ice;
    if (c && (c.expiresAt == null || c.expiresAt - 60 > Date.now() / 1000)) return Promise.resolve(c.servers);
    if (!this.getIceServers) return Promise.resolve([]);
    if (!this._icePending) {
      this._icePending = (async () => {
        try {
          const d = await this.getIceServers();
          const servers = ((d && d.ice_servers) || []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
          this._ice = { servers, expiresAt: d && d.expires_at != null ? d.expires_at : null };
          return servers;
        } catch (e) {
          console.warn('voice: no ICE servers', e);
          return [];
        } finally {
          this._icePending = null;
        }
      })();
    }
    return this._icePending;
  }

  async _startPc(slotCount) {
    const before = this._generation;
    // TURN candidates rank below direct ones, so the relay carries media only when direct
    // paths fail (or when forced, to check the relay).
    const iceServers = await this._iceServers();
    if (before !== this._generation) return false;  // closed or restarted meanwhile
    let forceRelay = false;
    try { forceRelay = iceServers.length > 0 && localStorage.getItem(FORCE_RELAY_KEY) === '1'; } catch { /* no storage */ }
    const gen = ++this._generation;
    const pc = new RTCPeerConnection({
      bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers,
      iceTransportPolicy: forceRelay ? 'relay' : 'all',
      ...this._e2eePcOptions(),
    });
    this.pc = pc;
    this._setState(this.state === 'reconnecting' ? 'reconnecting' : 'connecting');
    // The microphone is on the sender only while it may be heard (not muted, deafened or
    // push-to-talk released): a muted user sends nothing at all. Listen-only: never a track.
    const track = this.sendTrack;
    const first = this.soundTrack || (track && this._micOn() ? track : null);
    this._micTx = pc.addTransceiver(first || 'audio', {
      direction: 'sendonly', streams: this.stream ? [this.stream] : [],
    });
    for (let i = 0; i < slotCount; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
    this._addVideoTransceivers(pc);
    this._e2eeAttach(pc);

    pc.addEventListener('track', (e) => {
      this._e2eeAttach(pc);
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
      // 4404 while rejoining is the gateway having moved since our op 4: the rejoin retries.
      if (e && (e.code === 4403 || (e.code === 4404 && !this._rejoining))) {
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
    this._e2eeAttach(this.pc);
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
    if (!this.gateway.send(Op.VOICE_OFFER, { sdp: pc.localDescription.sdp, video_tracks: this._videoTrackMids() })) {
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
      this._mediaFailures = 0;
      clearTimeout(this._badTimer);
      this._badTimer = null;
      if (this.state !== 'connected') this._setState('connected');
    } else if (s === 'failed' || s === 'disconnected') {
      if (!this._badTimer) {
        this._badTimer = setTimeout(() => {
          this._badTimer = null;
          if (gen !== this._generation) return;
          const now = pc.connectionState;
          if (now !== 'failed' && now !== 'disconnected') return;
          // With the gateway up, the network works but media does not get through.
          if (this.gateway.status === 'ready') this._mediaFailures = (this._mediaFailures || 0) + 1;
          if (this._mediaFailures >= MAX_MEDIA_FAILURES) {
            const sdp = pc.remoteDescription && pc.remoteDescription.sdp;
            this.leave();
            this._setState('error', mediaProblem(sdp, { turn: !!(this._ice && this._ice.servers.length) }));
            return;
          }
          this.rejoin(`pc ${now} for >3 s`);
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
    this._closeVideoPc();
    for (const el of this._audioEls.values()) { el.srcObject = null; el.remove(); }
    this._audioEls.clear();
    this._stopStats();
  }

  _teardown({ keepStream = false } = {}) {
    this._closePc();
    this._e2eeStop();
    if (!keepStream && this.stream) { for (const t of this.stream.getTracks()) t.stop(); this.stream = null; this._closeGraph(); }
    this._endVideo();
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
      const streamOf = this.streamSlots[t.mid] || null;
      if (streamOf) {
        // A watched screen share's sound: its own volume and mute, apart from the voice.
        el.dataset.userId = '';
        el.dataset.streamOf = streamOf;
        el.muted = this.selfDeaf || !!this.streamMuted[streamOf];
        el.volume = this.streamVolumes[streamOf] != null ? clamp01(this.streamVolumes[streamOf]) : 1;
        continue;
      }
      const user = this.slots[t.mid] || null;
      el.dataset.userId = user || '';
      el.dataset.streamOf = '';
      el.muted = this.selfDeaf;
      el.volume = user && this.volumes[user] != null ? clamp01(this.volumes[user]) : 1;
    }
  }

  userForMid(mid) { return this.slots[mid] || null; }

  // ---------------------------------------------------------------- mute / deafen

  _micOn() { return !this.selfMute && !this.selfDeaf && (!this.pushToTalk || this.pttActive); }

  /** Mute, deafen and push-to-talk: the track is disabled and taken off the sender
   * (replaceTrack(null): no RTP at all, where a disabled track still sends ~50 silent packets a
   * second). The server drops a muted participant's audio anyway. */
  _applyMicEnabled() {
    const t = this.micTrack;
    if (t) t.enabled = this._micOn();
    if (this.micGraph) this.micGraph.setGate({ pttOpen: this._micOn() });
    this._syncMicSender();
  }

  _syncMicSender() {
    this._micChain = this._micChain.then(async () => {
      const tx = this._micTx;
      if (!tx || !this.pc || this.pc.signalingState === 'closed') return;
      // A soundboard sound being played goes out on the microphone's sender, mixed with the
      // processed microphone (soundboard.js), whatever the mute state: the server checked the play.
      const want = this.soundTrack || (this._micOn() ? this.sendTrack : null);
      if (tx.sender.track !== want) await tx.sender.replaceTrack(want);
    }).catch((e) => console.warn('microphone replaceTrack', e));
    return this._micChain;
  }

  /** The soundboard's mix of microphone and sound while one plays (null: the plain microphone). */
  setSoundTrack(track) {
    this.soundTrack = track || null;
    // The SFU drops a self-muted member's audio: while a sound plays, a muted member shows as
    // unmuted (its microphone stays off, silent in the mix) so that the sound is heard.
    const lift = !!this.soundTrack && this.selfMute && !this.selfDeaf;
    if (lift !== this.soundUnmute) {
      this.soundUnmute = lift;
      if (this.channelId) this._sendState();
    }
    return this._syncMicSender();
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

/** Devices, preferences and push to talk (voice-devices.js) and video (voice-video.js) are
 * methods of Voice like its own: their getters and methods are copied onto its prototype. */
for (const part of [VoiceDevices, VoiceVideo, VoiceE2ee]) {
  for (const [name, desc] of Object.entries(Object.getOwnPropertyDescriptors(part.prototype))) {
    if (name !== 'constructor') Object.defineProperty(Voice.prototype, name, desc);
  }
}
