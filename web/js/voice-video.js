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
const SCREEN_CONSTRAINTS = { width: { max: 1920 }, height: { max: 1080 }, frameRate: { max: 15 } };

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
    this._screenTx = pc.addTransceiver(scr || 'video', { direction: 'sendonly', streams: scr ? [this.screenStream] : [] });
    for (let i = 0; i < VIDEO_SLOTS; i++) pc.addTransceiver('video', { direction: 'recvonly' });
    this.videoSlots = {};
    this._tilesKey = null;
  }

  /** op 12's video_tracks: which sendonly mid is the camera, which the screen. */
  _videoTrackMids() {
    const videoTracks = {};
    if (this._camTx && this._camTx.mid != null) videoTracks[this._camTx.mid] = 'camera';
    if (this._screenTx && this._screenTx.mid != null) videoTracks[this._screenTx.mid] = 'screen';
    return videoTracks;
  }

  /** The pc is gone: its transceivers, slots and layers with it. */
  _closeVideoPc() {
    this._camTx = null;
    this._screenTx = null;
    this.videoSlots = {};
    this.videoLayers = {};
  }

  /** Video never outlives the channel: a new channel starts with camera and screen off. */
  _endVideo() {
    this._stopCamera();
    this._stopScreen();
    this.videoTiles = [];
    this._tilesKey = null;
    this.videoDenied = false;
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
}

function liveVideoTrack(stream) {
  const t = stream ? stream.getVideoTracks()[0] : null;
  return t && t.readyState === 'live' ? t : null;
}
