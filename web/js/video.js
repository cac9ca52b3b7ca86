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
// State for tests: window.confabVideo = this.

import { h } from './dom.js';
import { VIDEO_SLOTS } from './voice-video.js';

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
    for (const s of this.store.voiceStatesIn(v.channelId)) {
      if (s.user_id === me) continue;
      if (s.self_stream) out.push({ user_id: s.user_id, track: 'screen', local: false });
      if (s.self_video) out.push({ user_id: s.user_id, track: 'camera', local: false });
    }
    if (me && v.screenOn) out.push({ user_id: me, track: 'screen', local: true });
    if (me && v.cameraOn) out.push({ user_id: me, track: 'camera', local: true });
    out.sort((a, b) => (a.track === b.track ? 0 : a.track === 'screen' ? -1 : 1));
    return out.map((t) => ({ ...t, key: `${t.user_id}:${t.track}` }));
  }

  render() {
    const wanted = this._wanted();
    const keys = new Set(wanted.map((t) => t.key));
    for (const [key, tile] of this.tiles) {
      if (keys.has(key)) continue;
      this._resize.unobserve(tile.el);
      this._visible.unobserve(tile.el);
      tile.video.srcObject = null;
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
      this._attach(tile);
    }
    const screens = wanted.filter((t) => t.track === 'screen').length;
    this.el.hidden = wanted.length === 0;
    this.el.dataset.count = String(wanted.length);
    this.el.classList.toggle('has-screen', screens > 0);
    this._schedule();
  }

  _create(w) {
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
    const tile = { ...w, el, video, cssWidth: 0, cssHeight: 0, inView: true, stream: null, source: null };
    el._tile = tile;
    this.tiles.set(w.key, tile);
    this._resize.observe(el);
    this._visible.observe(el);
    return tile;
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
      if (!t || t.local) continue;
      const shown = pageVisible && !this.el.hidden && t.inView && t.cssWidth > 0 && t.cssHeight > 0;
      if (!shown) continue;
      list.push({ user_id: t.user_id, track: t.track, width: Math.round(t.cssWidth * dpr), height: Math.round(t.cssHeight * dpr) });
    }
    this.reports += 1;
    this.voice.setVideoTiles(list.slice(0, VIDEO_SLOTS));
  }
}
