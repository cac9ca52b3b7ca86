// The video tile grid of the voice channel we are in (docs/gateway.md § Video).
//
// One tile per video in the channel: every participant's camera (self_video) and screen share
// (self_stream) from the voice states, screen shares first and spanning the grid's width; our own
// camera and screen are previews of the local capture. Remote tiles show the track the server put
// on one of our recvonly video transceivers (VOICE_VIDEO_SLOTS via voice.videoTrackFor).
//
// Size reports: each remote tile's rendered size × devicePixelRatio (ResizeObserver) is sent
// with op 15 (voice.setVideoTiles), debounced; a tile scrolled out of view (IntersectionObserver),
// a hidden grid or a hidden page reports nothing, so the server stops forwarding it.
//
// Go Live: a screen share is watched on demand. Until we choose to watch it, a sharer shows as
// a "LIVE" card with a Watch button and is left out of op 15, so the SFU forwards nothing of it;
// a watched share gets a tile with its viewer count, its sound's volume and mute, full screen
// and Stop watching. Our own share's tile shows how many watch it and the quality preset.
//
// State for tests: window.confabVideo = this.

import { h, clear } from './dom.js';
import { icon } from './icons.js';
import { VIDEO_SLOTS, SCREEN_PRESETS } from './voice-video.js';

const REPORT_DEBOUNCE_MS = 300;

export class VideoGrid {
  constructor({ voice, store }) {
    this.voice = voice;
    this.store = store;
    this.el = h('section', { class: 'video-grid', 'aria-label': 'Video', 'data-testid': 'video-grid', hidden: true });
    this.tiles = new Map();  // `${user_id}:${track}` -> tile
    this.reports = 0;        // op 15 lists handed to voice (tests)
    this._timer = null;
    this._resize = new ResizeObserver((entries) => {
      for (const e of entries) {
        const tile = e.target._tile;
        if (!tile) continue;
        const box = e.contentBoxSize && e.contentBoxSize[0];
        tile.cssWidth = box ? box.inlineSize : e.contentRect.width;
        tile.cssHeight = box ? box.blockSize : e.contentRect.height;
      }
      this._schedule();
    });
    this._visible = new IntersectionObserver((entries) => {
      for (const e of entries) if (e.target._tile) e.target._tile.inView = e.isIntersecting;
      this._schedule();
    });
    document.addEventListener('visibilitychange', () => this._schedule());
    // Zooming changes devicePixelRatio without resizing the tiles' CSS boxes.
    window.addEventListener('resize', () => this._schedule());
    voice.onChange(() => this.render());
  }

  /** The videos to show: [{key, user_id, track, local}], screens first. */
  _wanted() {
    const v = this.voice;
    if (!v.channelId) return [];
    const me = this.store.me && this.store.me.id;
    const out = [];
    const sharing = new Set();
    for (const s of this.store.voiceStatesIn(v.channelId)) {
      if (s.user_id === me) continue;
      if (s.self_stream) {
        sharing.add(s.user_id);
        out.push({ user_id: s.user_id, track: 'screen', local: false, card: !v.isWatching(s.user_id) });
      }
      if (s.self_video) out.push({ user_id: s.user_id, track: 'camera', local: false });
    }
    // A share that ended is no longer watched: the next one starts as a card again.
    for (const u of [...v.watching]) if (!sharing.has(u)) v.watching.delete(u);
    if (me && v.screenOn) out.push({ user_id: me, track: 'screen', local: true });
    if (me && v.cameraOn) out.push({ user_id: me, track: 'camera', local: true });
    out.sort((a, b) => (a.track === b.track ? 0 : a.track === 'screen' ? -1 : 1));
    return out.map((t) => ({ ...t, key: `${t.user_id}:${t.track}${t.card ? ':card' : ''}` }));
  }

  render() {
    const wanted = this._wanted();
    const keys = new Set(wanted.map((t) => t.key));
    for (const [key, tile] of this.tiles) {
      if (keys.has(key)) continue;
      this._resize.unobserve(tile.el);
      this._visible.unobserve(tile.el);
      if (tile.video) tile.video.srcObject = null;
      tile.el.remove();
      this.tiles.delete(key);
    }
    let prev = null;
    for (const w of wanted) {
      let tile = this.tiles.get(w.key);
      if (!tile) tile = this._create(w);
      // Keep DOM order = wanted order (screens first) without re-creating elements.
      const want = prev ? prev.el.nextSibling : this.el.firstChild;
      if (want !== tile.el) this.el.insertBefore(tile.el, want);
      prev = tile;
      if (tile.card) this._updateCard(tile); else { this._attach(tile); this._updateControls(tile); }
    }
    const screens = wanted.filter((t) => t.track === 'screen').length;
    this.el.hidden = wanted.length === 0;
    this.el.dataset.count = String(wanted.length);
    this.el.classList.toggle('has-screen', screens > 0);
    this._schedule();
  }

  _create(w) {
    if (w.card) return this._createCard(w);
    const user = this.store.userById(w.user_id);
    const name = this.store.displayName(w.user_id, user);
    const video = h('video', { autoplay: true, playsinline: true, 'data-testid': 'video-el' });
    video.muted = true;  // audio comes from the audio slots
    const label = h('span', { class: 'video-label', text: w.track === 'screen' ? `${name} (screen)` : name });
    const el = h('div', {
      class: `video-tile ${w.track}${w.local ? ' local' : ''}`, 'data-testid': 'video-tile',
      'data-user-id': w.user_id, 'data-track': w.track, 'data-local': String(w.local),
      'aria-label': w.track === 'screen' ? `${name}'s screen` : `${name}'s camera`,
    }, video, h('div', { class: 'video-waiting muted small', text: 'Waiting for video…' }), label);
    const tile = { ...w, el, video, cssWidth: 0, cssHeight: 0, inView: true, stream: null, source: null, controls: null };
    if (w.track === 'screen') {
      tile.controls = w.local ? this._ownShareControls(tile) : this._watchControls(tile, name);
      el.append(tile.controls.el);
    }
    el._tile = tile;
    this.tiles.set(w.key, tile);
    this._resize.observe(el);
    this._visible.observe(el);
    return tile;
  }

  /** A share we do not watch: who is live, how many watch, and a Watch button. */
  _createCard(w) {
    const user = this.store.userById(w.user_id);
    const name = this.store.displayName(w.user_id, user);
    const viewers = h('span', { class: 'stream-viewers small', 'data-testid': 'stream-viewers' });
    const watch = h('button', {
      type: 'button', class: 'btn', 'data-testid': 'watch-stream', text: 'Watch stream',
      'aria-label': `Watch ${name}'s stream`, onclick: () => this.voice.watchStream(w.user_id, true),
    });
    const el = h('div', {
      class: 'video-tile screen stream-card', 'data-testid': 'stream-card', 'data-user-id': w.user_id,
      role: 'group', 'aria-label': `${name} is live`,
    }, h('div', { class: 'stream-card-body' },
      h('span', { class: 'live-badge', text: 'LIVE' }),
      h('span', { class: 'stream-card-name', text: `${name} is sharing their screen` }),
      viewers, watch));
    const tile = { ...w, el, video: null, cssWidth: 0, cssHeight: 0, inView: true, source: null, viewers };
    el._tile = tile;
    this.tiles.set(w.key, tile);
    return tile;
  }

  _viewerText(userId) {
    const n = this.store.voiceStates.get(userId)?.stream_viewers | 0;
    return n === 1 ? '1 watching' : `${n} watching`;
  }

  _updateCard(tile) {
    tile.viewers.textContent = this._viewerText(tile.user_id);
  }

  /** On a watched share: viewers, the sound's mute and volume, full screen, stop watching. */
  _watchControls(tile, name) {
    const v = this.voice;
    const viewers = h('span', { class: 'stream-viewers small', 'data-testid': 'stream-viewers' });
    const mute = h('button', {
      type: 'button', class: 'icon-btn tiny', 'data-testid': 'stream-mute',
      onclick: () => v.setStreamMuted(tile.user_id, !v.streamMuted[tile.user_id]),
    });
    const volume = h('input', {
      type: 'range', min: '0', max: '100', step: '1', class: 'stream-volume', 'data-testid': 'stream-volume',
      'aria-label': `Volume of ${name}'s stream`,
    });
    volume.addEventListener('input', () => v.setStreamVolume(tile.user_id, Number(volume.value) / 100));
    const full = h('button', {
      type: 'button', class: 'icon-btn tiny', 'data-testid': 'stream-fullscreen',
      'aria-label': 'Full screen', title: 'Full screen',
      onclick: () => {
        if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
        else tile.el.requestFullscreen?.().catch(() => {});
      },
    }, icon('maximize', 16));
    const stop = h('button', {
      type: 'button', class: 'btn secondary small', 'data-testid': 'stream-stop-watching', text: 'Stop watching',
      onclick: () => v.watchStream(tile.user_id, false),
    });
    const el = h('div', { class: 'stream-controls' }, h('span', { class: 'live-badge', text: 'LIVE' }), viewers, mute, volume, full, stop);
    return { el, viewers, mute, volume };
  }

  /** On our own share: how many watch, and the quality preset. */
  _ownShareControls() {
    const v = this.voice;
    const viewers = h('span', { class: 'stream-viewers small', 'data-testid': 'stream-viewers' });
    const preset = h('select', { class: 'stream-preset', 'data-testid': 'screen-preset', 'aria-label': 'Stream quality' },
      ...Object.entries(SCREEN_PRESETS).map(([k, p]) => h('option', { value: k, text: p.label })));
    preset.addEventListener('change', () => v.setScreenPreset(preset.value));
    const el = h('div', { class: 'stream-controls' }, h('span', { class: 'live-badge', text: 'LIVE' }), viewers, preset);
    return { el, viewers, preset };
  }

  _updateControls(tile) {
    const c = tile.controls;
    if (!c) return;
    const v = this.voice;
    c.viewers.textContent = this._viewerText(tile.user_id);
    if (c.preset) {
      if (c.preset.value !== v.screenPreset) c.preset.value = v.screenPreset;
      return;
    }
    const hasSound = !!v.streamMidOf(tile.user_id);
    const muted = !!v.streamMuted[tile.user_id];
    c.mute.hidden = !hasSound;
    c.volume.hidden = !hasSound;
    if (c.mute.dataset.muted !== String(muted)) { clear(c.mute); c.mute.append(icon(muted ? 'speakerOff' : 'speaker', 16)); }
    c.mute.setAttribute('aria-label', muted ? 'Unmute the stream' : 'Mute the stream');
    c.mute.dataset.muted = String(muted);
    const vol = Math.round(100 * (v.streamVolumes[tile.user_id] ?? 1));
    if (Number(c.volume.value) !== vol) c.volume.value = String(vol);
  }

  _attach(tile) {
    let track = null;
    if (tile.local) {
      track = tile.track === 'camera' ? this.voice.cameraTrack : this.voice.screenTrack;
    } else {
      track = this.voice.videoTrackFor(tile.user_id, tile.track);
    }
    tile.el.dataset.hasVideo = String(!!track);
    if (track === tile.source) return;
    tile.source = track;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) tile.video.play().catch(() => {});
  }

  _schedule() {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._report(), REPORT_DEBOUNCE_MS);
  }

  /** op 15: every remote tile that is on screen, with its size in device pixels. */
  _report() {
    if (!this.voice.channelId) return;
    const dpr = window.devicePixelRatio || 1;
    const pageVisible = document.visibilityState !== 'hidden';
    const list = [];
    for (const tile of this.el.children) {
      const t = tile._tile;
      if (!t || t.local || t.card) continue;
      const shown = pageVisible && !this.el.hidden && t.inView && t.cssWidth > 0 && t.cssHeight > 0;
      if (!shown) continue;
      list.push({ user_id: t.user_id, track: t.track, width: Math.round(t.cssWidth * dpr), height: Math.round(t.cssHeight * dpr) });
    }
    this.reports += 1;
    this.voice.setVideoTiles(list.slice(0, VIDEO_SLOTS));
  }
}
