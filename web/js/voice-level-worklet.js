// The microphone's level meter and gate, on the audio thread (an AudioWorkletProcessor; loaded by
// voice-audio.js). Per 128-sample block: the block's RMS level in dBFS decides whether the gate is
// open, and the output is the input times a gain ramped towards 0 or 1 — below the threshold the
// encoder gets digital silence, so the SFU's audio-level (and its speaking ring) sees silence.
// No allocation per block; the meter is posted to the page about 20 times a second.
//
// Settings (port messages, all optional): { mode: 'vad' | 'ptt', auto: bool, thresholdDb: number,
// pttOpen: bool }. Posted back: { level (dBFS, loudest block since the last post), threshold
// (dBFS, the one in force: the manual one or the automatic estimate), open (gate), frames (blocks
// processed so far) }.

const ATTACK_S = 0.01;      // this long above the threshold opens the gate (a lone click does not)
const HANGOVER_S = 0.3;     // this long below it closes the gate (no chopped word endings)
const FADE_IN_S = 0.005;    // gain ramps, so opening and closing make no click of their own
const FADE_OUT_S = 0.02;
const REPORT_S = 0.05;
const FLOOR_DB = -100;      // what digital silence reads as

// Automatic sensitivity: the noise floor follows the quietest blocks (falls fast, rises
// ~3 dB/s, so a long sentence does not pass for noise) and the threshold sits this far above it,
// within these bounds.
const AUTO_MARGIN_DB = 18;
const AUTO_MIN_DB = -60;
const AUTO_MAX_DB = -30;
const FLOOR_RISE_DB_PER_S = 3;

class GateProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.mode = 'vad';
    this.auto = true;
    this.thresholdDb = -50;
    this.pttOpen = false;
    this.open = false;
    this.gain = 0;
    this.aboveS = 0;          // time continuously above the threshold
    this.belowS = 0;          // time since the level was last above it
    this.noiseDb = -70;
    this.peakDb = FLOOR_DB;
    this.sinceReport = 0;
    this.frames = 0;
    this.port.onmessage = (e) => {
      const d = e.data || {};
      if (d.mode === 'vad' || d.mode === 'ptt') this.mode = d.mode;
      if (typeof d.auto === 'boolean') this.auto = d.auto;
      if (Number.isFinite(d.thresholdDb)) this.thresholdDb = d.thresholdDb;
      if (typeof d.pttOpen === 'boolean') this.pttOpen = d.pttOpen;
    };
  }

  threshold() {
    if (!this.auto) return this.thresholdDb;
    return Math.min(AUTO_MAX_DB, Math.max(AUTO_MIN_DB, this.noiseDb + AUTO_MARGIN_DB));
  }

  process(inputs, outputs) {
    const input = inputs[0];
    const output = outputs[0];
    const n = output[0] ? output[0].length : 128;
    const blockS = n / sampleRate;
    const x = input && input[0];
    let sum = 0;
    if (x) for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
    const db = x && sum > 0 ? Math.max(FLOOR_DB, 10 * Math.log10(sum / x.length)) : FLOOR_DB;

    if (db < this.noiseDb) this.noiseDb += 0.2 * (db - this.noiseDb);
    else this.noiseDb += FLOOR_RISE_DB_PER_S * blockS;
    const threshold = this.threshold();

    if (this.mode === 'ptt') {
      this.open = this.pttOpen;
      this.aboveS = 0;
      this.belowS = 0;
    } else if (db > threshold) {
      this.aboveS += blockS;
      this.belowS = 0;
      if (this.aboveS >= ATTACK_S) this.open = true;
    } else {
      this.aboveS = 0;
      this.belowS += blockS;
      if (this.belowS >= HANGOVER_S) this.open = false;
    }

    // The gain moves per sample towards the gate's state; every output channel gets channel 0
    // (a microphone is mono; a stereo one is heard as its first channel).
    const target = this.open ? 1 : 0;
    const step = this.open ? 1 / (FADE_IN_S * sampleRate) : 1 / (FADE_OUT_S * sampleRate);
    let g = this.gain;
    const out0 = output[0];
    if (out0) {
      for (let i = 0; i < n; i++) {
        if (g < target) g = Math.min(target, g + step); else if (g > target) g = Math.max(target, g - step);
        out0[i] = x ? x[i] * g : 0;
      }
      for (let c = 1; c < output.length; c++) output[c].set(out0);
    }
    this.gain = g;

    this.frames += 1;
    if (db > this.peakDb) this.peakDb = db;
    this.sinceReport += blockS;
    if (this.sinceReport >= REPORT_S) {
      this.port.postMessage({ level: this.peakDb, threshold, open: this.open, frames: this.frames });
      this.sinceReport = 0;
      this.peakDb = FLOOR_DB;
    }
    return true;
  }
}

registerProcessor('confab-gate', GateProcessor);
