// The soundboard (docs/soundboard.md): a server's short sounds, played into the voice channel
// we are in, a notice of who played what, and the server settings tab that manages them.
//
// Playing: POST /channels/{id}/soundboard/play first — the server checks the permission, that
// we are in the channel and the rate limit, and tells the channel (VOICE_SOUNDBOARD_PLAY) —
// then this client mixes the sound into its own outgoing voice: microphone and sound meet in
// a MediaStreamAudioDestinationNode whose track replaces the microphone on the sender for the
// sound's length (Voice.setSoundTrack). Everyone hears it through the SFU like our voice, with
// their own volume for us; we hear it locally too. A muted microphone stays silent in the mix
// (a disabled track is silence), so only the sound goes out.

import { h, clear, toast } from './dom.js';
import { icon } from './icons.js';
import { PERM } from './state.js';
import { addSettingsTab } from './community.js';

const NOTICE_MS = 4000;
const MAX_BYTES = 512 * 1024;

let ctx = null;  // {api, store, gateway, voice, rerender}
const sounds = new Map();    // server id -> Sound[] (null while loading)
const decoded = new Map();   // sound id -> Promise<AudioBuffer>
let open = false;            // the voice panel's grid is shown
let mixer = null;

export function initSoundboard(c) {
  ctx = c;
  const g = c.gateway;
  g.on('SOUNDBOARD_SOUND_CREATE', (d) => {
    const list = d && sounds.get(d.server_id);
    if (list && !list.some((s) => s.id === d.id)) list.push(d);
    changed();
  });
  g.on('SOUNDBOARD_SOUND_DELETE', (d) => {
    const list = d && sounds.get(d.server_id);
    if (list) sounds.set(d.server_id, list.filter((s) => s.id !== d.sound_id));
    if (d) decoded.delete(d.sound_id);
    changed();
  });
  g.on('VOICE_SOUNDBOARD_PLAY', (d) => showNotice(d));
  g.on('READY', () => { sounds.clear(); changed(); });
  addSettingsTab('soundboard', 'Soundboard', soundboardTab);
}

function changed() {
  if (ctx && ctx.rerender) ctx.rerender();
  for (const fn of [...tabListeners]) fn();
}

/** The server's sounds, fetched once and kept live by events; [] until loaded. */
function soundsOf(serverId) {
  if (!serverId) return [];
  if (!sounds.has(serverId)) {
    sounds.set(serverId, null);
    ctx.api.sounds(serverId).then((list) => { sounds.set(serverId, list || []); changed(); },
      () => { sounds.delete(serverId); });
  }
  return sounds.get(serverId) || [];
}

function label(s) { return `${s.emoji ? `${s.emoji} ` : ''}${s.name}`; }

// ------------------------------------------------------------------ playing

/** Decodes a sound's audio once (the browser caches the download too). */
function buffer(serverId, sound) {
  if (!decoded.has(sound.id)) {
    const p = ctx.api.soundAudio(serverId, sound.id).then((bytes) => audioContext().decodeAudioData(bytes));
    p.catch(() => decoded.delete(sound.id));
    decoded.set(sound.id, p);
  }
  return decoded.get(sound.id);
}

let ac = null;
function audioContext() {
  if (!ac) ac = new AudioContext();
  return ac;
}

/** Mixes sounds with the microphone into one track for the voice sender. */
class Mixer {
  constructor(voice) {
    this.voice = voice;
    this.ac = audioContext();
    this.dest = this.ac.createMediaStreamDestination();
    this.micTrack = null;
    this.micNode = null;
    this.playing = 0;
  }

  /** The processed microphone joins the mix (listen-only: none; a muted one is silent). */
  _followMic() {
    const t = this.voice.sendTrack;
    if (t === this.micTrack) return;
    if (this.micNode) { try { this.micNode.disconnect(); } catch { /* gone */ } }
    this.micTrack = t;
    this.micNode = t ? this.ac.createMediaStreamSource(new MediaStream([t])) : null;
    if (this.micNode) this.micNode.connect(this.dest);
  }

  async play(audio, volume) {
    await this.ac.resume();
    this._followMic();
    const src = this.ac.createBufferSource();
    src.buffer = audio;
    const gain = this.ac.createGain();
    gain.gain.value = Math.min(1, Math.max(0, Number(volume) || 0));
    src.connect(gain);
    gain.connect(this.dest);
    // We hear it too, unless deafened.
    if (!this.voice.selfDeaf) gain.connect(this.ac.destination);
    this.playing += 1;
    if (this.playing === 1) await this.voice.setSoundTrack(this.dest.stream.getAudioTracks()[0]);
    src.addEventListener('ended', () => {
      gain.disconnect();
      this.playing -= 1;
      if (this.playing === 0) this.voice.setSoundTrack(null);
    });
    src.start();
  }
}

/** Plays a sound into our voice channel: the server first, then the mix. */
export async function playSound(sound) {
  const v = ctx.voice;
  if (!v || !v.channelId) return;
  const serverId = v.serverId;
  const audio = buffer(serverId, sound);  // fetched and decoded while the server answers
  try {
    await ctx.api.playSound(v.channelId, sound.id);
  } catch (e) {
    toast(`Soundboard: ${e.message}`, 'error');
    return;
  }
  try {
    if (!mixer || mixer.voice !== v) mixer = new Mixer(v);
    await mixer.play(await audio, sound.volume);
  } catch (e) {
    toast(`Soundboard: could not play ${sound.name} (${e.message || e})`, 'error');
  }
}

// ------------------------------------------------------------------ voice panel

/** The voice panel's soundboard toggle. */
export function soundboardButton() {
  return h('button', {
    class: `icon-btn${open ? ' on' : ''}`, 'aria-label': 'Soundboard', 'aria-expanded': String(open),
    'aria-controls': 'soundboard-grid', 'data-testid': 'soundboard-toggle', title: 'Soundboard',
    onclick: () => { open = !open; changed(); },
  }, icon('soundboard'));
}

/** The grid of the server's sounds under the voice panel's buttons, when open. */
export function soundboardGrid() {
  const v = ctx && ctx.voice;
  if (!open || !v || !v.channelId) return null;
  const list = soundsOf(v.serverId);
  const allowed = ctx.store.can(PERM.USE_SOUNDBOARD, v.serverId) && ctx.store.can(PERM.SPEAK, v.serverId);
  const grid = h('div', { class: 'soundboard-grid', id: 'soundboard-grid', role: 'group', 'aria-label': 'Soundboard sounds', 'data-testid': 'soundboard-grid' });
  if (!sounds.get(v.serverId)) grid.append(h('p', { class: 'muted small', text: 'Loading sounds…' }));
  else if (!list.length) grid.append(h('p', { class: 'muted small', text: 'No sounds yet. Those who manage the server add them in its settings.' }));
  for (const s of list) {
    grid.append(h('button', {
      type: 'button', class: 'sound-btn', 'data-testid': 'sound-play', 'data-sound-id': s.id,
      'aria-label': `Play ${s.name}`, title: allowed ? `${s.name} (${(s.duration_ms / 1000).toFixed(1)} s)` : 'You need the Use soundboard permission',
      disabled: !allowed, onclick: () => playSound(s),
    }, s.emoji ? h('span', { 'aria-hidden': 'true', text: s.emoji }) : null, h('span', { text: s.name })));
  }
  return grid;
}

// ------------------------------------------------------------------ who played what

let noticeRoot = null;
function showNotice(d) {
  const v = ctx.voice;
  if (!d || !v || d.channel_id !== v.channelId) return;
  if (!noticeRoot) {
    noticeRoot = h('div', { class: 'soundboard-notices', role: 'status', 'aria-live': 'polite', 'data-testid': 'soundboard-notices' });
    document.body.append(noticeRoot);
  }
  const who = ctx.store.displayName(d.user_id);
  const what = d.name ? label(d) : 'a sound';
  const el = h('div', { class: 'soundboard-notice', 'data-testid': 'soundboard-notice', 'data-user-id': d.user_id, 'data-sound-id': d.sound_id },
    icon('soundboard', 14), h('span', { text: `${who} played ${what}` }));
  noticeRoot.append(el);
  setTimeout(() => el.remove(), NOTICE_MS);
}

// ------------------------------------------------------------------ server settings tab

const tabListeners = new Set();

function soundboardTab(s, view, panel) {
  const manage = ctx.store.can(PERM.MANAGE_SERVER, s.id);
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'tab-error' });
  const showError = (e) => { err.textContent = e ? (e.message || String(e)) : ''; err.hidden = !e; };
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Sounds', 'data-testid': 'sound-list' });
  const draw = () => {
    if (!list.isConnected && panel.isConnected) return;
    clear(list);
    const all = soundsOf(s.id);
    if (!sounds.get(s.id)) list.append(h('li', { class: 'muted', text: 'Loading…' }));
    else if (!all.length) list.append(h('li', { class: 'muted', text: 'No sounds yet.' }));
    for (const snd of all) {
      list.append(h('li', { class: 'admin-row', 'data-testid': 'sound-row', 'data-sound-id': snd.id },
        h('div', {}, h('span', { text: label(snd) }),
          h('div', { class: 'muted small', text: `${(snd.duration_ms / 1000).toFixed(1)} s · ${Math.round(snd.size / 1024)} KiB · volume ${Math.round(snd.volume * 100)}%` })),
        h('button', { type: 'button', class: 'btn secondary small', text: 'Preview', 'aria-label': `Preview ${snd.name}`,
          onclick: async () => {
            try {
              const a = audioContext();
              await a.resume();
              const src = a.createBufferSource();
              src.buffer = await buffer(s.id, snd);
              const g = a.createGain();
              g.gain.value = snd.volume;
              src.connect(g).connect(a.destination);
              src.start();
            } catch (e) { showError(e); }
          } }),
        manage ? h('button', { type: 'button', class: 'btn secondary small', text: 'Delete', 'aria-label': `Delete sound ${snd.name}`, 'data-testid': 'sound-delete',
          onclick: async () => {
            showError(null);
            try { await ctx.api.deleteSound(s.id, snd.id); } catch (e) { showError(e); }
          } }) : null));
    }
  };
  tabListeners.clear();
  tabListeners.add(draw);
  draw();
  panel.append(err);
  if (manage) panel.append(uploadForm(s, showError));
  panel.append(list);
  return null;
}

function uploadForm(s, showError) {
  const file = h('input', { type: 'file', accept: 'audio/ogg,audio/opus,audio/mpeg,audio/wav,.ogg,.opus,.mp3,.wav', 'data-testid': 'sound-file', id: 'sound-file', required: true });
  const name = h('input', { type: 'text', maxlength: '32', 'data-testid': 'sound-name', id: 'sound-name', required: true, autocomplete: 'off' });
  const emoji = h('input', { type: 'text', maxlength: '8', 'data-testid': 'sound-emoji', id: 'sound-emoji', autocomplete: 'off', placeholder: '🔔' });
  const volume = h('input', { type: 'range', min: '0', max: '100', step: '1', value: '100', 'data-testid': 'sound-volume', id: 'sound-volume' });
  file.addEventListener('change', () => {
    const f = file.files && file.files[0];
    if (f && !name.value) name.value = f.name.replace(/\.[^.]+$/, '').slice(0, 32);
  });
  const submit = h('button', { type: 'submit', class: 'btn primary small', text: 'Upload', 'data-testid': 'sound-upload' });
  const form = h('form', { class: 'sound-upload', 'aria-label': 'Upload a sound', 'data-testid': 'sound-upload-form' },
    h('p', { class: 'muted small', text: 'Ogg/Opus, MP3 or WAV; at most 5.2 seconds and 512 KiB.' }),
    h('label', { for: 'sound-file', class: 'small', text: 'Sound file' }), file,
    h('label', { for: 'sound-name', class: 'small', text: 'Name' }), name,
    h('label', { for: 'sound-emoji', class: 'small', text: 'Emoji (optional)' }), emoji,
    h('label', { for: 'sound-volume', class: 'small', text: 'Volume' }), volume,
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(null);
    const f = file.files && file.files[0];
    if (!f) { showError(new Error('Choose a sound file.')); return; }
    if (f.size > MAX_BYTES) { showError(new Error('That file is larger than 512 KiB. Trim or compress it and try again.')); return; }
    submit.disabled = true;
    try {
      await ctx.api.uploadSound(s.id, f, { name: name.value.trim(), emoji: emoji.value.trim() || null, volume: Number(volume.value) / 100 });
      form.reset();
    } catch (err) { showError(err); } finally { submit.disabled = false; }
  });
  return form;
}
