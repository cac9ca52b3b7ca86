// The voice panel: joining from the UI, connection state and quality, voice buttons, volumes, voice settings.

import { store, ui, voice, videoGrid } from './context.js';
import { PERM } from './state.js';
import { h, add, clear, toast } from './dom.js';
import { icon } from './icons.js';
import { stagePanelButtons } from './stage.js';
import { soundboardButton, soundboardGrid } from './soundboard.js';

export async function joinVoice(c) {
  if (!voice) return;
  if (voice.channelId === c.id) return;
  try {
    await voice.join(c.server_id, c.id);
  } catch (e) {
    toast(`Could not join voice: ${e.message}`, 'error');
  }
}

let voiceSettingsOpen = false;
let deviceCache = null;

export function renderVoicePanel() {
  if (!ui) return;
  const el = ui.voicePanel;
  if (videoGrid) videoGrid.render();
  if (!voice || !voice.channelId) { el.hidden = true; clear(el); ui.voiceBar.hidden = true; return; }
  el.hidden = false;
  const vc = store.findChannel(voice.channelId);
  ui.voiceBar.hidden = false;
  ui.voiceBar.textContent = '';
  ui.voiceBar.append(icon('speaker', 16), h('span', { text: `${voice.state === 'connected' ? 'In voice' : 'Voice'}: ${vc ? vc.name : ''}${voice.selfMute ? ' · muted' : ''}` }),
    h('span', { class: 'voice-bar-open', text: 'Voice controls' }));

  // Don't rebuild while the user drags a slider or uses a select: it would drop the interaction.
  const active = document.activeElement;
  if (active && el.contains(active) && (active.tagName === 'INPUT' || active.tagName === 'SELECT')) {
    updateVoiceLive(el);
    return;
  }
  clear(el);
  const c = store.findChannel(voice.channelId);
  const srv = store.servers.get(voice.serverId);
  const stateText = {
    joining: 'Joining…', connecting: 'Connecting…', connected: 'Voice Connected',
    reconnecting: 'Reconnecting…', error: 'Voice error', idle: 'Disconnected',
  }[voice.state] || voice.state;
  const q = voice.quality;
  add(el,
    h('div', { class: 'voice-status-row' },
      h('div', {},
        h('div', { class: `voice-state ${voice.state}`, 'data-testid': 'voice-state', 'data-state': voice.state, text: stateText }),
        h('div', { class: 'muted small', text: `${c ? c.name : ''}${srv ? ` / ${srv.name}` : ''}` }),
        e2eeBox(),
        voice.error ? h('div', { class: 'form-error small', text: voice.error }) : null),
      h('span', {
        class: `quality ${q ? q.level : 'unknown'}`, 'data-testid': 'voice-quality',
        role: 'img',
        'aria-label': q ? `Connection ${q.level}: ${q.rttMs ?? '?'} ms, ${q.lossPercent}% loss` : 'Connection quality unknown',
        title: q ? `RTT ${q.rttMs ?? '?'} ms · loss ${q.lossPercent}%` : 'measuring…',
      }, h('i'), h('i'), h('i'))),
    h('div', { class: 'voice-buttons' },
      h('button', { class: `icon-btn toggle${voice.selfMute ? ' on' : ''}`, 'aria-label': voice.selfMute ? 'Unmute' : 'Mute', 'aria-pressed': String(voice.selfMute), 'data-testid': 'voice-mute', title: voice.selfMute ? 'Unmute' : 'Mute', onclick: () => voice.toggleMute() }, icon(voice.selfMute ? 'micOff' : 'mic')),
      h('button', { class: `icon-btn toggle${voice.selfDeaf ? ' on' : ''}`, 'aria-label': voice.selfDeaf ? 'Undeafen' : 'Deafen', 'aria-pressed': String(voice.selfDeaf), 'data-testid': 'voice-deafen', title: voice.selfDeaf ? 'Undeafen' : 'Deafen', onclick: () => voice.toggleDeaf() }, icon(voice.selfDeaf ? 'headphonesOff' : 'headphones')),
      videoButton('camera'),
      videoButton('screen'),
      soundboardButton(),
      h('button', { class: `icon-btn${voiceSettingsOpen ? ' on' : ''}`, 'aria-label': 'Voice settings', 'aria-expanded': String(voiceSettingsOpen), 'data-testid': 'voice-settings', onclick: toggleVoiceSettings }, icon('gear')),
      h('button', { class: 'icon-btn danger', 'aria-label': 'Leave voice channel', 'data-testid': 'voice-leave', title: 'Disconnect', onclick: () => voice.leave() }, icon('leave'))),
    stagePanelButtons(c, store.me && store.voiceStates.get(store.me.id)),
    soundboardGrid(),
    voice.pushToTalk ? h('div', { class: `ptt muted small${voice.pttActive ? ' active' : ''}`, 'data-testid': 'ptt-indicator', text: voice.pttActive ? 'Transmitting…' : `Push to talk: hold ${keyName(voice.pushToTalkKey)}` }) : null,
  );
  // participants with per-user volume
  const others = store.voiceStatesIn(voice.channelId).filter((v) => !store.me || v.user_id !== store.me.id);
  if (others.length) {
    el.append(h('ul', { class: 'voice-volumes', 'aria-label': 'Participant volume' }, others.map((v) => {
      const name = store.displayName(v.user_id);
      const slider = h('input', { type: 'range', min: '0', max: '100', step: '1', 'aria-label': `Volume for ${name}`, 'data-testid': 'user-volume', 'data-user-id': v.user_id });
      slider.value = String(Math.round(voice.getUserVolume(v.user_id) * 100));
      slider.addEventListener('input', () => voice.setUserVolume(v.user_id, Number(slider.value) / 100));
      return h('li', { class: `vol-row${voice.speaking[v.user_id] ? ' speaking' : ''}`, 'data-user-id': v.user_id },
        h('span', { class: 'vol-name', text: name }), slider);
    })));
  }
  if (voiceSettingsOpen) el.append(voiceSettingsBox());
}

/** An encrypted call: the lock, the verification code to compare, and users whose identity key
 * changed since this device last saw them. */
function e2eeBox() {
  if (!voice.e2eeOn) return null;
  const changed = voice.e2ee.changedKeys.map((u) => store.displayName(u));
  return h('div', { class: 'voice-e2ee small', 'data-testid': 'voice-e2ee' },
    h('span', { class: 'e2ee-lock', title: 'End-to-end encrypted: the server forwards what it cannot hear' }, icon('lock', 12), ' End-to-end encrypted'),
    h('div', { class: 'e2ee-code', title: 'Compare with the others in the call: the same code on every screen means nobody in between',
      'data-testid': 'e2ee-code', text: voice.e2ee.code ? `Verification code: ${voice.e2ee.code}` : 'Verification code: …' }),
    changed.length ? h('div', { class: 'form-error', 'data-testid': 'e2ee-key-changed',
      text: `Identity key changed since last time: ${changed.join(', ')} (a new device, or someone in between — compare the code)` }) : null);
}

/** Camera / screen-share toggle; disabled with the reason as tooltip without VIDEO. */
function videoButton(kind) {
  const on = kind === 'camera' ? voice.cameraOn : voice.screenOn;
  const allowed = !voice.videoDenied && store.can(PERM.VIDEO, voice.serverId);
  const label = kind === 'camera' ? (on ? 'Turn camera off' : 'Turn camera on') : (on ? 'Stop sharing your screen' : 'Share your screen');
  const title = allowed ? label : 'You need the Video permission in this channel';
  const btn = h('button', {
    class: `icon-btn toggle video-btn${on ? ' active' : ''}`, 'aria-label': label, 'aria-pressed': String(on),
    'data-testid': kind === 'camera' ? 'voice-camera' : 'voice-screen', title, disabled: !allowed && !on,
    onclick: async () => {
      btn.disabled = true;
      // Failures land in voice.error, which the voice listener toasts.
      try { await (kind === 'camera' ? voice.toggleCamera() : voice.toggleScreen()); } finally { renderVoicePanel(); }
    },
  }, icon(kind === 'camera' ? (on ? 'video' : 'videoOff') : 'screen'));
  // A disabled button gets no pointer events in some browsers: the wrapper carries the tooltip.
  return allowed || on ? btn : h('span', { class: 'btn-wrap', title }, btn);
}

function updateVoiceLive(el) {
  const s = el.querySelector('[data-testid="voice-state"]');
  if (s) s.dataset.state = voice.state;
}

function keyName(code) { return code.replace(/^Key/, '').replace(/^Digit/, ''); }

function toggleVoiceSettings() {
  voiceSettingsOpen = !voiceSettingsOpen;
  if (voiceSettingsOpen) voice.devices().then((d) => { deviceCache = d; renderVoicePanel(); });
  renderVoicePanel();
}

function voiceSettingsBox() {
  const d = deviceCache || { inputs: [], outputs: [], canPickOutput: false };
  const mic = h('select', { 'aria-label': 'Microphone', 'data-testid': 'mic-select' },
    h('option', { value: '', text: 'Default microphone' }),
    d.inputs.filter((x) => x.deviceId && x.deviceId !== 'default').map((x, i) => h('option', { value: x.deviceId, text: x.label || `Microphone ${i + 1}` })));
  mic.value = voice.inputDeviceId;
  mic.addEventListener('change', () => voice.setInputDevice(mic.value).catch((e) => toast(`Microphone: ${e.message}`, 'error')));
  const spk = h('select', { 'aria-label': 'Speaker', 'data-testid': 'speaker-select', disabled: !d.canPickOutput },
    h('option', { value: '', text: d.canPickOutput ? 'Default speaker' : 'Default speaker (this browser cannot switch)' }),
    d.outputs.filter((x) => x.deviceId && x.deviceId !== 'default').map((x, i) => h('option', { value: x.deviceId, text: x.label || `Speaker ${i + 1}` })));
  spk.value = voice.outputDeviceId;
  spk.addEventListener('change', () => voice.setOutputDevice(spk.value));
  const mode = (value, label) => {
    const r = h('input', { type: 'radio', name: 'voice-mode', value, id: `voice-mode-${value}`, 'data-testid': `voice-mode-${value}` });
    r.checked = voice.voiceMode === value;
    // Shown at once: the panel is not rebuilt while focus is in one of its inputs.
    r.addEventListener('change', () => {
      if (!r.checked) return;
      voice.setVoiceMode(value);
      keyBtn.hidden = value !== 'ptt';
      vad.hidden = value === 'ptt';
    });
    return h('span', { class: 'radio' }, r, h('label', { for: `voice-mode-${value}`, text: label }));
  };
  const keyBtn = h('button', { type: 'button', class: 'btn secondary small', 'aria-label': 'Change push-to-talk key', text: `Key: ${keyName(voice.pushToTalkKey)}` });
  keyBtn.addEventListener('click', () => {
    keyBtn.textContent = 'Press a key…';
    const onKey = (e) => {
      e.preventDefault();
      window.removeEventListener('keydown', onKey, true);
      voice.setPushToTalk(voice.pushToTalk, e.code);
    };
    window.addEventListener('keydown', onKey, true);
  });
  keyBtn.hidden = !voice.pushToTalk;
  const vad = sensitivityBox();
  vad.hidden = voice.pushToTalk;
  return h('div', { class: 'voice-settings', 'data-testid': 'voice-settings-box' },
    h('label', { class: 'small' }, 'Microphone', mic),
    h('label', { class: 'small' }, 'Speaker', spk),
    h('label', { class: 'small' }, 'Noise suppression', suppressionSelect()),
    h('fieldset', { class: 'voice-mode small', 'data-testid': 'voice-mode' },
      h('legend', { text: 'Input mode' }),
      h('div', { class: 'ptt-row' }, mode('vad', 'Voice activity'), mode('ptt', 'Push to talk'), keyBtn)),
    vad);
}

function suppressionSelect() {
  const sel = h('select', { 'aria-label': 'Noise suppression', 'data-testid': 'noise-suppression' },
    h('option', { value: 'standard', text: 'Standard (RNNoise)' }),
    h('option', { value: 'browser', text: 'Browser' }),
    h('option', { value: 'off', text: 'Off' }));
  sel.value = voice.noiseSuppression;
  sel.addEventListener('change', () => voice.setNoiseSuppression(sel.value).catch((e) => toast(`Noise suppression: ${e.message}`, 'error')));
  if (voice.noiseSuppression === 'standard' && voice.suppressionActive === 'browser') {
    return h('span', {}, sel, h('span', { class: 'muted small', 'data-testid': 'noise-fallback', text: 'Unavailable in this browser: using the browser\'s.' }));
  }
  return sel;
}

// The meter spans -100..0 dBFS, as the threshold slider does.
const pct = (db) => `${Math.min(100, Math.max(0, db + 100))}%`;

/** Input sensitivity as Discord has it: "Automatically determine", or a threshold slider over a
 * live meter of the microphone's level (green while the gate is open). */
function sensitivityBox() {
  const auto = h('input', { type: 'checkbox', id: 'vad-auto', 'data-testid': 'vad-auto' });
  auto.checked = voice.vadAuto;
  const slider = h('input', {
    type: 'range', min: '-100', max: '0', step: '1', 'aria-label': 'Input sensitivity threshold (dB)',
    'data-testid': 'vad-threshold', disabled: voice.vadAuto,
  });
  slider.value = String(Math.round(voice.vadThresholdDb));
  const fill = h('div', { class: 'meter-fill', 'data-testid': 'mic-meter-fill' });
  const mark = h('div', { class: 'meter-mark' });
  const meter = h('div', { class: 'mic-meter', role: 'meter', 'aria-label': 'Input level', 'aria-valuemin': '-100', 'aria-valuemax': '0', 'data-testid': 'mic-meter' }, fill, mark);
  const show = (m) => {
    fill.style.width = pct(m.level);
    fill.classList.toggle('open', !!m.open);
    mark.style.left = pct(m.threshold);
    meter.setAttribute('aria-valuenow', String(Math.round(m.level)));
    meter.dataset.open = String(!!m.open);
  };
  // Until the panel is rebuilt without this meter.
  const off = voice.onMeter((m) => { if (meter.isConnected) show(m); else off(); });
  if (voice.micGraph && voice.micGraph.meter) show(voice.micGraph.meter);
  else mark.style.left = pct(voice.vadThresholdDb);
  auto.addEventListener('change', () => { slider.disabled = auto.checked; voice.setSensitivity({ auto: auto.checked }); });
  slider.addEventListener('input', () => voice.setSensitivity({ thresholdDb: Number(slider.value) }));
  return h('div', { class: 'vad small', 'data-testid': 'vad-box' },
    h('div', { class: 'ptt-row' }, auto, h('label', { for: 'vad-auto', text: 'Automatically determine input sensitivity' })),
    meter, slider);
}
