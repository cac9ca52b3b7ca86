// Voice's devices and preferences: audio devices, saved choices, per-user volume, push to talk.

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

  _audioConstraints() {
    const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
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
}

export function clamp01(v) { v = Number(v); return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1; }
function loadJson(key, dflt) {
  try { const v = JSON.parse(localStorage.getItem(key)); return v && typeof v === 'object' ? v : dflt; } catch { return dflt; }
}
function saveJson(key, v) { try { localStorage.setItem(key, JSON.stringify(v)); } catch { /* ignore */ } }
