// Voice's video (docs/gateway.md § Video): camera and screen sending, video slots, layers, tile reports.

import { Op } from './gateway.js';

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

/**
 * Go Live quality presets the streamer picks (docs/gateway.md § Go Live; what each costs is in
 * docs/video.md). Each is sent as three simulcast layers — full, half and quarter size, the
 * quarter at no more than 15 fps — so a small tile or a slow viewer gets a smaller layer while
 * a large tile gets the full one. `hint` is the track's contentHint: "detail" keeps text sharp
 * (the encoder drops frames rather than resolution), "motion" keeps the frame rate (games).
 */
export const SCREEN_PRESETS = {
  '720p30': { label: '720p 30 fps', width: 1280, height: 720, frameRate: 30, bitrate: 2_500_000, hint: 'detail' },
  '1080p30': { label: '1080p 30 fps', width: 1920, height: 1080, frameRate: 30, bitrate: 4_500_000, hint: 'detail' },
  '1080p60': { label: '1080p 60 fps', width: 1920, height: 1080, frameRate: 60, bitrate: 7_000_000, hint: 'motion' },
  text: { label: 'Text: 1080p, 5 fps, sharpest', width: 1920, height: 1080, frameRate: 5, bitrate: 2_000_000, hint: 'detail' },
  motion: { label: 'Motion: 720p 60 fps, for games', width: 1280, height: 720, frameRate: 60, bitrate: 4_000_000, hint: 'motion' },
};
export const DEFAULT_SCREEN_PRESET = '1080p30';
const SCREEN_PRESET_KEY = 'confab.voice.screenPreset';
/** Screen simulcast: quarter, half and full size of the capture, lowest first. */
const SCREEN_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4 },
  { rid: 'h', scaleResolutionDownBy: 2 },
  { rid: 'f', scaleResolutionDownBy: 1 },
];
/** Share of the preset's bitrate each layer may use, and the quarter layer's frame rate cap. */
const LAYER_BITRATE_SHARE = { q: 0.08, h: 0.3, f: 1 };
const LOW_LAYER_MAX_FPS = 15;

/** The encodings' bitrates and frame rates for a preset (exported for tests and docs). */
export function presetEncodings(preset) {
  const p = SCREEN_PRESETS[preset] || SCREEN_PRESETS[DEFAULT_SCREEN_PRESET];
  return SCREEN_ENCODINGS.map((e) => ({
    rid: e.rid,
    maxBitrate: Math.round(p.bitrate * LAYER_BITRATE_SHARE[e.rid]),
    maxFramerate: e.rid === 'q' ? Math.min(p.frameRate, LOW_LAYER_MAX_FPS) : p.frameRate,
  }));
}

function screenConstraints(preset) {
  const p = SCREEN_PRESETS[preset] || SCREEN_PRESETS[DEFAULT_SCREEN_PRESET];
  return { width: { max: p.width }, height: { max: p.height }, frameRate: { ideal: p.frameRate, max: p.frameRate } };
}

function savedPreset() {
  try {
    const v = localStorage.getItem(SCREEN_PRESET_KEY);
    return v && SCREEN_PRESETS[v] ? v : DEFAULT_SCREEN_PRESET;
  } catch { return DEFAULT_SCREEN_PRESET; }
}

/** Video fields, onto a new Voice (called by its constructor). */
export function initVideo(voice) {
  voice.cameraOn = false;
  voice.screenOn = false;
  voice.cameraStream = null;
  voice.screenStream = null;
  voice.videoSlots = {};        // mid -> {user_id, track} | null
  voice.videoLayers = {};       // 'camera' | 'screen' -> active rids last asked for
  voice.videoDenied = false;    // the server refused video (no VIDEO permission here)
  voice.videoTiles = [];        // the last tile list sent with op 15
  voice._camTx = null;
  voice._screenTx = null;
  voice._tilesKey = null;
  voice._tilesSentAt = 0;
  voice._tilesTimer = null;
  voice._layerChain = Promise.resolve();
  voice._videoClaimedAt = 0;    // when we last sent a state with camera or screen on
  // Go Live.
  voice.screenPreset = savedPreset();
  voice.screenHasAudio = false;  // our share carries its sound (tab / system audio)
  voice.watching = new Set();    // users whose screen share we chose to watch
  voice.streamSlots = {};        // mid -> user whose screen sound it carries
  voice.streamVolumes = {};      // user -> 0..1, the volume of their stream's sound
  voice.streamMuted = {};        // user -> true: their stream's sound muted by us
  voice._screenAudioTx = null;
}

/**
 * Every offer carries the video m-lines in a fixed order — the camera transceiver (simulcast
 * q/h/f), the screen transceiver, then VIDEO_SLOTS recvonly video transceivers (the tiles).
 * Camera and screen are sendonly with no track while off, so turning them on or off is a
 * replaceTrack, never a renegotiation. VOICE_VIDEO_SLOTS maps recvonly mids to (user, track);
 * VOICE_VIDEO_LAYERS says which encodings anyone watches; setVideoTiles() reports what the tile
 * grid (video.js) shows with op 15. Methods of Voice: voice.js copies them onto Voice.prototype,
 * so they use the connection core's fields (pc, channelId, gateway, …) and tests see one object
 * (window.confabVoice).
 */
export class VoiceVideo {
  // ---------------------------------------------------------------- transceivers and signalling

  /** The video m-lines of a new pc, all in the first offer and always in this order (the server
   * tells camera from screen by it, and video_tracks in op 12 says it again). */
  _addVideoTransceivers(pc) {
    const cam = this.cameraTrack;
    this._camTx = pc.addTransceiver(cam || 'video', {
      direction: 'sendonly',
      streams: cam ? [this.cameraStream] : [],
      sendEncodings: CAMERA_ENCODINGS.map((e) => ({ ...e })),
    });
    const scr = this.screenTrack;
    this._screenTx = pc.addTransceiver(scr || 'video', {
      direction: 'sendonly',
      streams: scr ? [this.screenStream] : [],
      sendEncodings: SCREEN_ENCODINGS.map((e) => ({ ...e })),
    });
    for (let i = 0; i < VIDEO_SLOTS; i++) pc.addTransceiver('video', { direction: 'recvonly' });
    // The share's sound: a second sending audio m-line after the video ones (the microphone's is
    // the first audio m-line), declared in op 12 as "screen_audio".
    const sound = this.screenAudioTrack;
    this._screenAudioTx = pc.addTransceiver(sound || 'audio', {
      direction: 'sendonly', streams: sound ? [this.screenStream] : [],
    });
    this.videoSlots = {};
    this._tilesKey = null;
    if (scr) this._applyPreset();
  }

  /** op 12's video_tracks: which sendonly mid is the camera, which the screen. */
  _videoTrackMids() {
    const videoTracks = {};
    if (this._camTx && this._camTx.mid != null) videoTracks[this._camTx.mid] = 'camera';
    if (this._screenTx && this._screenTx.mid != null) videoTracks[this._screenTx.mid] = 'screen';
    if (this._screenAudioTx && this._screenAudioTx.mid != null) videoTracks[this._screenAudioTx.mid] = 'screen_audio';
    return videoTracks;
  }

  /** The pc is gone: its transceivers, slots and layers with it. */
  _closeVideoPc() {
    this._camTx = null;
    this._screenTx = null;
    this._screenAudioTx = null;
    this.videoSlots = {};
    this.videoLayers = {};
    this.streamSlots = {};
  }

  /** Video never outlives the channel: a new channel starts with camera and screen off. */
  _endVideo() {
    this._stopCamera();
    this._stopScreen();
    this.videoTiles = [];
    this._tilesKey = null;
    this.videoDenied = false;
    this.watching = new Set();
  }

  // ---------------------------------------------------------------- gateway events

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
      this._attachScreenAudio(null);
      off = true;
    }
    if (off) {
      this.videoDenied = true;
      this.error = 'Video turned off: missing the VIDEO permission in this channel';
      this._changed();
    }
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

  _onVideoLayers(d) {
    if (!d || (d.track !== 'camera' && d.track !== 'screen') || !Array.isArray(d.active_rids)) return;
    if (d.channel_id && d.channel_id !== this.channelId) return;
    this.videoLayers[d.track] = d.active_rids.map(String);
    this._applyLayers(d.track);
  }

  // ---------------------------------------------------------------- camera and screen

  get cameraTrack() { return liveVideoTrack(this.cameraStream); }
  get screenTrack() { return liveVideoTrack(this.screenStream); }
  /** The sound of our screen share (tab or system audio), if the browser gave one. */
  get screenAudioTrack() {
    const t = this.screenStream ? this.screenStream.getAudioTracks()[0] : null;
    return t && t.readyState === 'live' ? t : null;
  }

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
   * Go Live on/off. `stream` lets a caller supply the capture (e.g. a canvas captureStream()
   * with a WebAudio track as its sound); by default the browser's picker (getDisplayMedia) is
   * shown, asking for the tab's or system's sound too where the browser offers it (Chromium:
   * a tab's sound everywhere, the system's on Windows and ChromeOS). `preset` picks the quality
   * (SCREEN_PRESETS; default: the last one used).
   */
  async setScreen(on, { stream = null, preset = null } = {}) {
    on = !!on;
    if (preset && SCREEN_PRESETS[preset]) this._rememberPreset(preset);
    if (!this.channelId || on === this.screenOn) return on === this.screenOn;
    if (!on) {
      this._stopScreen();
      await this._attach(this._screenTx, null, null);
      await this._attachScreenAudio(null);
      this._sendState();
      this._changed();
      return true;
    }
    if (!stream) {
      try {
        stream = await navigator.mediaDevices.getDisplayMedia({
          video: screenConstraints(this.screenPreset),
          // The shared tab's (or system's) sound, unprocessed: it is not a voice. The tab keeps
          // playing it locally, so the streamer does not hear it twice through Confab.
          audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
          systemAudio: 'include',
          surfaceSwitching: 'include',
        });
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
    if (kind === 'screen' && 'contentHint' in track) track.contentHint = SCREEN_PRESETS[this.screenPreset].hint;
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
    if (kind === 'screen') {
      const sound = this.screenAudioTrack;
      this.screenHasAudio = !!sound;
      if (sound) sound.contentHint = 'music';
      await this._attachScreenAudio(sound);
      await this._applyPreset();
    }
    this._changed();
    return true;
  }

  async _attachScreenAudio(track) {
    const tx = this._screenAudioTx;
    if (!tx || !this.pc) return;
    try {
      if (tx.sender.track !== track) await tx.sender.replaceTrack(track);
      if (track && tx.sender.setStreams && this.screenStream) tx.sender.setStreams(this.screenStream);
    } catch (e) { console.warn('screen audio replaceTrack', e); }
  }

  _rememberPreset(preset) {
    this.screenPreset = preset;
    try { localStorage.setItem(SCREEN_PRESET_KEY, preset); } catch { /* no storage */ }
  }

  /** Switches the Go Live quality, live if sharing: capture size and frame rate, the track's
   * content hint, and each simulcast layer's bitrate and frame rate. */
  async setScreenPreset(preset) {
    if (!SCREEN_PRESETS[preset]) return false;
    this._rememberPreset(preset);
    await this._applyPreset();
    this._changed();
    return true;
  }

  _applyPreset() {
    const preset = this.screenPreset;
    const track = this.screenTrack;
    this._layerChain = this._layerChain.then(async () => {
      if (track) {
        if ('contentHint' in track) track.contentHint = SCREEN_PRESETS[preset].hint;
        // A canvas or a fake capture may not take every constraint: the encoder settings
        // below still apply.
        await track.applyConstraints(screenConstraints(preset)).catch((e) => console.info('screen constraints', e.name));
      }
      const tx = this._screenTx;
      if (!tx || !this.pc) return;
      const params = tx.sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      const want = presetEncodings(preset);
      for (const enc of params.encodings) {
        const w = want.find((x) => x.rid === enc.rid) || want[want.length - 1];
        enc.maxBitrate = w.maxBitrate;
        enc.maxFramerate = w.maxFramerate;
      }
      params.degradationPreference = SCREEN_PRESETS[preset].hint === 'motion' ? 'maintain-framerate' : 'maintain-resolution';
      await tx.sender.setParameters(params);
    }).catch((e) => console.warn('screen preset', e));
    return this._layerChain;
  }

  // ---------------------------------------------------------------- watching streams

  /** Watch (or stop watching) `userId`'s screen share: only then does the grid show it and the
   * SFU forward it and its sound to us. */
  watchStream(userId, on = true) {
    userId = String(userId);
    if (on) this.watching.add(userId); else this.watching.delete(userId);
    this._changed();
  }

  isWatching(userId) { return this.watching.has(String(userId)); }

  /** Volume (0..1) of `userId`'s stream sound, apart from their voice. */
  setStreamVolume(userId, v) {
    this.streamVolumes[String(userId)] = Math.max(0, Math.min(1, Number(v)));
    this._applyAudio();
    this._changed();
  }

  setStreamMuted(userId, muted) {
    if (muted) this.streamMuted[String(userId)] = true; else delete this.streamMuted[String(userId)];
    this._applyAudio();
    this._changed();
  }

  /** The mid whose audio carries `userId`'s stream sound, if any. */
  streamMidOf(userId) {
    return Object.keys(this.streamSlots).find((m) => this.streamSlots[m] === String(userId)) || null;
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
    this.screenHasAudio = false;
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
}

function liveVideoTrack(stream) {
  const t = stream ? stream.getVideoTracks()[0] : null;
  return t && t.readyState === 'live' ? t : null;
}
