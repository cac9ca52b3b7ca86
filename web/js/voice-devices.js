// Voice's devices and preferences: audio devices, saved choices, per-user volume, push to talk,
// noise suppression and the voice-activity gate (whose audio graph is voice-audio.js).

import { MicGraph, SUPPRESSIONS } from './voice-audio.js';

const VOLUME_KEY = 'confab.voice.volumes';
const PREFS_KEY = 'confab.voice.prefs';

/** The saved preferences, onto a new Voice (called by its constructor). */
export function initPrefs(voice) {
  const prefs = loadJson(PREFS_KEY, {});
  voice.inputDeviceId = prefs.inputDeviceId || '';
  voice.outputDeviceId = prefs.outputDeviceId || '';
  voice.pushToTalk = !!prefs.pushToTalk;
  voice.pushToTalkKey = prefs.pushToTalkKey || 'KeyV';
  voice.pttActive = false;
  voice.noiseSuppression = SUPPRESSIONS.includes(prefs.noiseSuppression) ? prefs.noiseSuppression : 'standard';
  voice.vadAuto = prefs.vadAuto !== false;
  voice.vadThresholdDb = Number.isFinite(prefs.vadThresholdDb) ? prefs.vadThresholdDb : -50;
  voice.micGraph = null;
  voice.suppressionActive = null;  // what runs: 'standard' | 'browser' | 'off' (null: no microphone)
  voice._meterListeners = new Set();
  voice.volumes = loadJson(VOLUME_KEY, {});  // user_id -> 0..1
}

/**
 * The saved choices (microphone, speaker, push to talk and its key, per-user volumes; in
 * localStorage), listing and switching audio devices, and the push-to-talk keys. Methods of
 * Voice: voice.js copies them onto Voice.prototype, so they use the connection core's fields and
 * tests see one object (window.confabVoice).
 */
export class VoiceDevices {
  // ---------------------------------------------------------------- per-user volume

  setUserVolume(userId, v) {
    this.volumes[userId] = clamp01(v);
    saveJson(VOLUME_KEY, this.volumes);
    this._applyAudio();
    this._changed();
  }
  getUserVolume(userId) { return this.volumes[userId] != null ? this.volumes[userId] : 1; }

  // ---------------------------------------------------------------- push to talk

  setPushToTalk(enabled, key) {
    this.pushToTalk = !!enabled;
    if (key) this.pushToTalkKey = key;
    this.pttActive = false;
    this._savePrefs();
    if (this.micGraph) this.micGraph.setGate(this._gateSettings());
    this._applyMicEnabled();
    this._changed();
  }

  /** "Voice activity" (the gate opens on the level) or "Push to talk" (it follows the key). */
  setVoiceMode(mode) { this.setPushToTalk(mode === 'ptt'); }
  get voiceMode() { return this.pushToTalk ? 'ptt' : 'vad'; }

  // ---------------------------------------------------------------- suppression, gate, meter

  /** Input sensitivity: automatic, or a threshold in dBFS below which nothing is heard. */
  setSensitivity({ auto, thresholdDb } = {}) {
    if (typeof auto === 'boolean') this.vadAuto = auto;
    if (Number.isFinite(thresholdDb)) this.vadThresholdDb = Math.min(0, Math.max(-100, thresholdDb));
    this._savePrefs();
    if (this.micGraph) this.micGraph.setGate(this._gateSettings());
    this._changed();
  }

  /** Off | Browser | Standard (RNNoise). Mid-call: no renegotiation; the browser's own
   * suppression is a getUserMedia constraint, so turning it on or off takes the microphone anew. */
  async setNoiseSuppression(mode) {
    if (!SUPPRESSIONS.includes(mode)) return;
    this.noiseSuppression = mode;
    this._savePrefs();
    if (this.stream) {
      const browserBefore = this.suppressionActive === 'browser';
      await this._applySuppression();
      if (browserBefore !== (this.suppressionActive === 'browser')) await this._reacquireMic();
    }
    this._changed();
  }

  /** The level meter, about 20 times a second: fn({ level, threshold, open }) in dBFS. */
  onMeter(fn) { this._meterListeners.add(fn); return () => this._meterListeners.delete(fn); }

  _gateSettings() {
    return { mode: this.pushToTalk ? 'ptt' : 'vad', auto: this.vadAuto, thresholdDb: this.vadThresholdDb, pttOpen: this._micOn() };
  }

  /** Builds the graph for a new microphone stream (or feeds it the new stream). Without Web
   * Audio worklets the raw track is sent, with the browser's suppression. */
  async _attachGraph() {
    if (!this.micGraph) {
      try {
        this.micGraph = await MicGraph.create((m) => { for (const fn of this._meterListeners) fn(m); });
        const ctx = this.micGraph.ctx;
        // A context made without a user gesture may start suspended: the raw track is sent
        // until it runs (sendTrack), then the processed one.
        ctx.addEventListener('statechange', () => this._syncMicSender());
        if (ctx.state !== 'running') {
          ctx.resume().catch(() => {});
          const wake = () => ctx.resume().catch(() => {});
          window.addEventListener('pointerdown', wake, { once: true });
          window.addEventListener('keydown', wake, { once: true });
        }
        this.micGraph.setGate(this._gateSettings());
      } catch (e) {
        console.warn('voice: no audio processing, sending the microphone as is', e);
        this.micGraph = null;
        this.suppressionActive = this.noiseSuppression === 'off' ? 'off' : 'browser';
        if (this.noiseSuppression === 'standard') await this._reacquireMic();
        return;
      }
    }
    this.micGraph.setSource(this.stream);
    const browserBefore = this._browserNs();
    await this._applySuppression();
    // Standard fell back to the browser's: take the microphone again with that constraint.
    if (!browserBefore && this._browserNs()) await this._reacquireMic();
  }

  async _applySuppression() {
    const g = this.micGraph;
    if (!g) { this.suppressionActive = 'browser'; return; }
    if (this.noiseSuppression === 'standard') {
      try {
        await g.setSuppression('standard');
        this.suppressionActive = 'standard';
        return;
      } catch (e) {
        console.warn('voice: RNNoise noise suppression unavailable, using the browser\'s', e);
        await g.setSuppression('off');
        this.suppressionActive = 'browser';
        return;
      }
    }
    await g.setSuppression('off');
    this.suppressionActive = this.noiseSuppression;
  }

  _browserNs() {
    const a = this.suppressionActive;
    return a ? a === 'browser' : this.noiseSuppression === 'browser';
  }

  async _reacquireMic() {
    if (!this.stream) return;
    // The old capture stops first: while it is live, Chromium hands out the same device with the
    // same audio processing, whatever noiseSuppression the new request asks for.
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: this._audioConstraints(), video: false });
    if (this.micGraph) this.micGraph.setSource(this.stream);
    this._applyMicEnabled();
    await this._micChain;
  }

  _closeGraph() {
    if (this.micGraph) this.micGraph.close();
    this.micGraph = null;
    this.suppressionActive = null;
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

  _audioConstraints() {
    // The browser's suppression only when chosen (or when RNNoise cannot run): under RNNoise it
    // would only add its own artefacts.
    const c = { echoCancellation: true, noiseSuppression: this._browserNs(), autoGainControl: true };
    if (this.inputDeviceId) c.deviceId = { exact: this.inputDeviceId };
    return c;
  }

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
    await this._reacquireMic();  // the graph's output track stays on the sender
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
      noiseSuppression: this.noiseSuppression, vadAuto: this.vadAuto, vadThresholdDb: this.vadThresholdDb,
    });
  }
}

export function clamp01(v) { v = Number(v); return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1; }
function loadJson(key, dflt) {
  try { const v = JSON.parse(localStorage.getItem(key)); return v && typeof v === 'object' ? v : dflt; } catch { return dflt; }
}
function saveJson(key, v) { try { localStorage.setItem(key, JSON.stringify(v)); } catch { /* ignore */ } }
