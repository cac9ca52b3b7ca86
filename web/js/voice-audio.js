// The microphone's processing graph (docs/voice.md § Voice settings):
//
//   microphone → [RNNoise worklet, "Standard" suppression] → gate + level meter worklet
//              → MediaStreamAudioDestinationNode, whose one track goes on the RTCRtpSender.
//
// The output track never changes for the life of the graph, so switching suppression, mode or
// sensitivity (or the input device) mid-call rewires nodes here and never renegotiates.

const RNNOISE_DIR = '/vendor/web-noise-suppressor';
const SAMPLE_RATE = 48000;  // RNNoise works on 48 kHz, 10 ms frames

/** Noise suppression choices: none, the browser's (getUserMedia), RNNoise in a worklet. */
export const SUPPRESSIONS = ['off', 'browser', 'standard'];

let rnnoiseBinary = null;  // Promise<ArrayBuffer> of the .wasm this browser runs (SIMD or not)

/** The RNNoise .wasm, compiled once here first: a browser (or a Content-Security-Policy) that
 * cannot run it fails here, where we can fall back, not silently inside the worklet. */
function loadRnnoiseBinary() {
  if (!rnnoiseBinary) {
    rnnoiseBinary = (async () => {
      const { loadRnnoise } = await import(`${RNNOISE_DIR}/index.js`);
      const bin = await loadRnnoise({ url: `${RNNOISE_DIR}/rnnoise.wasm`, simdUrl: `${RNNOISE_DIR}/rnnoise_simd.wasm` });
      await WebAssembly.compile(bin);
      return bin;
    })();
    rnnoiseBinary.catch(() => { rnnoiseBinary = null; });
  }
  return rnnoiseBinary;
}

export class MicGraph {
  /** Throws where Web Audio worklets are missing (the caller then sends the raw track). */
  static async create(onMeter) {
    if (typeof AudioWorkletNode === 'undefined') throw new Error('no AudioWorklet');
    const g = new MicGraph(onMeter);
    try {
      await g.ctx.audioWorklet.addModule('/js/voice-level-worklet.js');
    } catch (e) {
      g.ctx.close().catch(() => {});
      throw e;
    }
    g.gate = new AudioWorkletNode(g.ctx, 'confab-gate', { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
    g.gate.port.onmessage = (e) => { g.meter = e.data; if (g.onMeter) g.onMeter(e.data); };
    g.gate.connect(g.dest);
    return g;
  }

  constructor(onMeter) {
    this.onMeter = onMeter;
    this.ctx = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: 'interactive' });
    this.dest = this.ctx.createMediaStreamDestination();
    this.dest.channelCount = 1;
    this.source = null;
    this.rnnoise = null;
    this.gate = null;
    this.meter = null;          // { level, threshold, open, frames } from the gate worklet
    this.suppression = 'off';   // what runs in this graph: 'standard' or not
  }

  /** The track to send. */
  get track() { return this.dest.stream.getAudioTracks()[0]; }
  /** Whether the context runs (a page without a user gesture may keep it suspended). */
  get running() { return this.ctx.state === 'running'; }

  /** A new microphone stream (another device, other getUserMedia constraints). */
  setSource(stream) {
    if (this.source) this.source.disconnect();
    this.source = stream ? this.ctx.createMediaStreamSource(stream) : null;
    this._wire();
  }

  /** 'standard' inserts RNNoise; anything else takes it out. Throws if RNNoise cannot run. */
  async setSuppression(s) {
    if (s === 'standard' && !this.rnnoise) {
      const bin = await loadRnnoiseBinary();
      await this.ctx.audioWorklet.addModule(`${RNNOISE_DIR}/rnnoise/workletProcessor.js`);
      const { RnnoiseWorkletNode } = await import(`${RNNOISE_DIR}/index.js`);
      this.rnnoise = new RnnoiseWorkletNode(this.ctx, { maxChannels: 1, wasmBinary: bin });
    }
    this.suppression = s === 'standard' ? 'standard' : 'off';
    this._wire();
  }

  /** Gate settings: { mode: 'vad'|'ptt', auto, thresholdDb, pttOpen } (any subset). */
  setGate(settings) { if (this.gate) this.gate.port.postMessage(settings); }

  _wire() {
    if (this.source) this.source.disconnect();
    if (this.rnnoise) this.rnnoise.disconnect();
    if (!this.source) return;
    if (this.suppression === 'standard' && this.rnnoise) {
      this.source.connect(this.rnnoise);
      this.rnnoise.connect(this.gate);
    } else {
      this.source.connect(this.gate);
    }
  }

  close() {
    if (this.source) this.source.disconnect();
    if (this.rnnoise) { this.rnnoise.destroy(); this.rnnoise.disconnect(); }
    this.ctx.close().catch(() => {});
  }
}
