// Reload while in voice: remember the channel for this tab and offer to rejoin it after the reload.

import { store, ui, voice } from './context.js';
import { h, clear } from './dom.js';
import { icon } from './icons.js';
import { isVoiceChannel } from './stage.js';
import { joinVoice } from './voice-panel.js';

const VOICE_KEY = 'confab.voice';
let unloading = false;
let rejoinOffered = false;

export function rememberVoiceChannel() {
  if (unloading || !voice) return;
  try {
    if (voice.channelId) sessionStorage.setItem(VOICE_KEY, JSON.stringify({ server_id: voice.serverId, channel_id: voice.channelId }));
    // Left on purpose (not by the reload): forget it, unless the offer is still on screen.
    else if (rejoinOffered && ui && ui.rejoin.hidden) sessionStorage.removeItem(VOICE_KEY);
  } catch { /* storage unavailable: nothing to offer later */ }
  if (voice.channelId && ui) hideRejoin();
}

/** After READY: offer the remembered channel (a click, so the browser lets the audio play). */
export function offerVoiceRejoin() {
  if (rejoinOffered || !ui) return;
  rejoinOffered = true;
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(VOICE_KEY) || 'null'); } catch { saved = null; }
  const c = saved && store.findChannel(saved.channel_id);
  if (!c || !isVoiceChannel(c) || (voice && voice.channelId)) { try { sessionStorage.removeItem(VOICE_KEY); } catch { /* */ } return; }
  const srv = store.servers.get(c.server_id);
  clear(ui.rejoin).append(
    icon('speaker', 18),
    h('span', { class: 'rejoin-text', text: `You were in the voice channel ${c.name}${srv ? ` on ${srv.name}` : ''} before the page reloaded.` }),
    h('button', { type: 'button', class: 'btn primary small', 'data-testid': 'rejoin-voice-button', text: 'Rejoin voice', onclick: () => { hideRejoin(); joinVoice(c); } }),
    h('button', { type: 'button', class: 'btn secondary small', text: 'Dismiss', onclick: () => { hideRejoin(); try { sessionStorage.removeItem(VOICE_KEY); } catch { /* */ } } }));
  ui.rejoin.hidden = false;
}

function hideRejoin() { if (ui) { ui.rejoin.hidden = true; clear(ui.rejoin); } }

/** On page unload, an explicit leave: the SFU would otherwise notice only at ICE timeout. The
 * channel stays remembered (sessionStorage, this tab only) so the reloaded page can offer to
 * rejoin it. */
export function leaveForUnload() {
  unloading = true;
  if (voice && voice.channelId) voice.leave();
}
