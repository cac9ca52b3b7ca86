// Shared by the UI modules: the API client, store and gateway, the shell's sections, voice, the render queue.

import { Api } from './api.js';
import { Gateway } from './gateway.js';
import { Store } from './state.js';

export const api = new Api();
export const store = new Store();
export const gateway = new Gateway({ getToken: () => api.token, refreshToken: () => api.refresh(), beforeAuth: () => api.ensureFreshToken() });

// The `let`s below are live bindings: importers always see the current value, and only the
// setters here change it.
export let ui = null;  // references to the shell's sections once logged in
export function setUi(sections) { ui = sections; }

export let voice = null;
export let videoGrid = null;
export function setVoice(v) { voice = v; }
export function setVideoGrid(grid) { videoGrid = grid; }

export let pendingInvite = null;  // an invite code from the address, joined after the login
export function setPendingInvite(code) { pendingInvite = code; }

// Batch re-renders per microtask; the shell draws them (`onRender`).
let render = () => {};
export function onRender(fn) { render = fn; }
let pendingTopics = new Set();
let flushQueued = false;
export function invalidate(topics) {
  for (const t of topics) pendingTopics.add(t);
  if (flushQueued) return;
  flushQueued = true;
  queueMicrotask(() => {
    flushQueued = false;
    const t = pendingTopics;
    pendingTopics = new Set();
    render(t);
  });
}
