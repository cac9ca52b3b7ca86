// Confab web client: start-up and wiring. The UI is in one module per part of the screen (see
// shell.js for the layout); what they share is in context.js, client state in state.js,
// transport in api.js / gateway.js, voice in voice.js, the video tile grid in video.js.

import { api, store, gateway, ui, voice, setVoice, setVideoGrid, setPendingInvite, pendingInvite, invalidate, onRender } from './context.js';
import { Voice } from './voice.js';
import { VideoGrid } from './video.js';
import { setMentionResolver } from './markdown.js';
import { initSwitcher, openSwitcher } from './switcher.js';
import { initMentions, resolveMention } from './mentions.js';
import { toast } from './dom.js';
import { initStage } from './stage.js';
import { initCommunity } from './community.js';
import { initDms } from './dms.js';
import { initAuthView, showAuth, logoutLocal } from './auth-view.js';
import { buildShell, renderTopics } from './shell.js';
import { selectServer, selectChannel } from './navigation.js';
import { renderChannels } from './channel-list.js';
import { renderStatus } from './panels.js';
import { ensureMessagesLoaded, setComposerError } from './messages.js';
import { joinVoice, renderVoicePanel } from './voice-panel.js';
import { parseInviteCode, joinServerDialog, onServerCreate } from './dialogs.js';
import { rememberVoiceChannel, offerVoiceRejoin, leaveForUnload } from './rejoin.js';
import { closeDrawers } from './drawers.js';
import { initSoundboard } from './soundboard.js';
import { initEmoji } from './emoji.js';
import { initCommands } from './commands.js';
import { initSafety } from './safety.js';
import { initIntegrations } from './integrations.js';
import { initServerIcons } from './avatar-upload.js';
import { initNotifications, openLinkedChannel } from './notifications.js';

setPendingInvite(parseInviteCode(location.pathname.startsWith('/invite/') ? location.pathname : ''));

initCommunity({ api, store, gateway, invalidate: (topics) => invalidate(topics) });
initSafety({ api, store, gateway });
initIntegrations({ api, store });
initStage({ api, store, toast });
initMentions({ store });
initCommands({ api, store, gateway, showError: (text) => setComposerError(text, 'command') });
initSwitcher({ store, selectServer: (id) => selectServer(id), selectChannel: (id) => selectChannel(id), joinVoice: (c) => joinVoice(c) });
setMentionResolver(resolveMention);
initDms({ api, store, invalidate: (topics) => invalidate(topics), selectServer: (id) => selectServer(id), selectChannel: (id) => selectChannel(id) });
initAuthView({ start: startApp });
initNotifications();

// Exposed for tests and debugging.
window.confab = { api, store, gateway };

// The offline app shell (web/sw.js; installable as an app). Browsers allow service workers only
// on secure origins: HTTPS, or http://localhost / 127.0.0.1.
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.register('/sw.js').then(async () => {
    // The first visit loaded its files before the worker existed: hand it their list.
    const reg = await navigator.serviceWorker.ready;
    const urls = performance.getEntriesByType('resource').map((e) => e.name);
    if (reg.active) reg.active.postMessage({ type: 'cache-shell', urls });
  }).catch((e) => console.warn('service worker not registered:', e));
}

function startApp() {
  store.reset();
  buildShell();
  if (!voice) {
    const v = new Voice({
      gateway,
      getSelfId: () => store.me && store.me.id,
      getVoiceStates: (channelId) => store.voiceStatesIn(channelId),
      getIceServers: () => api.iceServers(),
      isE2ee: (channelId) => { const c = store.findChannel(channelId); return !!(c && c.e2ee); },
    });
    setVoice(v);
    window.confabVoice = v;
    initEmoji();
    initSoundboard({ api, store, gateway, voice: v, rerender: () => renderVoicePanel() });
    initServerIcons();
    let lastVoiceError = null;
    v.onChange(() => {
      rememberVoiceChannel();
      if (v.error && v.error !== lastVoiceError) toast(`Voice: ${v.error}`, 'error');
      lastVoiceError = v.error;
      renderVoicePanel();
      renderChannels();
    });
    const grid = new VideoGrid({ voice: v, store });
    setVideoGrid(grid);
    window.confabVideo = grid;
    if (ui) ui.videoHost.append(grid.el);
  }
  gateway.connect();
}

onRender(renderTopics);
store.subscribe(invalidate);

// =====================================================================================
// Gateway → store

gateway.on('*', (t, d) => {
  if (!d && t !== 'RESUMED') return;
  const topics = store.apply(t, d || {});
  if (topics.length) invalidate(topics);
  if (t === 'READY') {
    onReady();
  } else if (t === 'SERVER_CREATE') {
    onServerCreate(d.id);
  } else if (t === 'TYPING_START') {
    setTimeout(() => invalidate(['typing']), 10100);
  } else if (t === 'SERVER_DELETE' && voice && voice.serverId === d.id) {
    voice.leave();
  }
});
gateway.on('AUTH_FAILED', () => { api.clearTokens(); logoutLocal('Your session expired. Please log in again.'); });
gateway.onStatus(() => renderStatus());

function onReady() {
  openLinkedChannel();
  ensureMessagesLoaded();
  offerVoiceRejoin();
  if (pendingInvite) {
    const code = pendingInvite;
    setPendingInvite(null);
    history.replaceState(null, '', '/');
    joinServerDialog(code);
  }
}

// =====================================================================================
// Session lifecycle

api.onAuthLost = () => { if (ui) logoutLocal('Your session expired. Please log in again.'); };

window.addEventListener('beforeunload', leaveForUnload);

// =====================================================================================
// Keyboard: Ctrl+K (⌘K) quick switcher; Escape closes a drawer.

window.addEventListener('keydown', (e) => {
  if (!ui) return;
  if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && (e.key === 'k' || e.key === 'K')) {
    e.preventDefault();
    if (!document.querySelector('dialog[open]:not(.quick-switcher)')) openSwitcher();
  } else if (e.key === 'Escape' && !e.defaultPrevented && !document.querySelector('dialog[open]')
    && (ui.shell.classList.contains('show-sidebar') || ui.shell.classList.contains('show-members'))) {
    closeDrawers();
    ui.chatHeader.querySelector('.menu-btn')?.focus();
  }
});

if (api.loggedIn) startApp();
else showAuth(location.hash === '#register' ? 'register' : 'login');
