// Confab web client: UI. State lives in state.js, transport in api.js / gateway.js, voice in
// voice.js, the video tile grid in video.js. Rendering is per section (servers, channels, messages, …) from the store.

import { Api, ApiError } from './api.js';
import { Gateway } from './gateway.js';
import { Voice } from './voice.js';
import { VideoGrid } from './video.js';
import { Store, sortChannels, cmpId, PERM } from './state.js';
import { renderMarkdown, setMentionResolver } from './markdown.js';
import { initSwitcher, openSwitcher } from './switcher.js';
import { initMentions, attachMentionAutocomplete, resolveMention, linkPlainMentions } from './mentions.js';
import { h, add, clear, avatar, openDialog, field, showFieldErrors, toast, safeHttpUrl, tooltip, readableOn } from './dom.js';
import { icon } from './icons.js';
import { initStage, isVoiceChannel, stageParticipants, stagePanelButtons } from './stage.js';
import {
  initCommunity, onTopics, ensureRoles, ensureMembers, canOpenServerSettings, serverSettingsDialog, channelPermissionsDialog,
  memberDialog, reactionBar, openReactionPicker, togglePins, closePins, loadPins, pinnedIds, setPinned, rememberUser,
} from './community.js';
import { channelTitle, isPrivate, mentionsMe, HOME as HOME_ID } from './inbox.js';
import {
  initDms, homeButton, serverRailBadge, channelBadge, renderHomeHeader, renderDmSidebar, renderDmMembers,
  renderFriendsPage, ackIfViewing,
} from './dms.js';

const api = new Api();
const store = new Store();
const gateway = new Gateway({ getToken: () => api.token, refreshToken: () => api.refresh(), beforeAuth: () => api.ensureFreshToken() });
let voice = null;
let videoGrid = null;
let ui = null;  // references to the shell's sections once logged in
let pendingInvite = parseInviteCode(location.pathname.startsWith('/invite/') ? location.pathname : '');
const lastTypingSent = new Map();  // channel_id -> ms

const GROUP_MS = 5 * 60 * 1000;
const TYPING_SEND_EVERY_MS = 8000;

initCommunity({ api, store, invalidate: (topics) => invalidate(topics) });
initStage({ api, store, toast });
initMentions({ store });
initSwitcher({ store, selectServer: (id) => selectServer(id), selectChannel: (id) => selectChannel(id), joinVoice: (c) => joinVoice(c) });
setMentionResolver(resolveMention);
initDms({ api, store, invalidate: (topics) => invalidate(topics), selectServer: (id) => selectServer(id), selectChannel: (id) => selectChannel(id) });

// Exposed for tests and debugging.
window.confab = { api, store, gateway };

/** Accept a bare code, "/invite/CODE", or a full URL ending in /invite/CODE (or /CODE). */
export function parseInviteCode(input) {
  let s = String(input || '').trim();
  if (!s) return null;
  try {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) s = new URL(s).pathname;
  } catch { /* not a URL */ }
  s = s.split(/[?#]/)[0];
  const parts = s.split('/').filter(Boolean);
  const i = parts.lastIndexOf('invite');
  const code = i !== -1 && parts[i + 1] ? parts[i + 1] : parts[parts.length - 1];
  return code && /^[A-Za-z0-9_-]{1,64}$/.test(code) ? code : null;
}

// =====================================================================================
// Auth screen

function showAuth(mode = 'login', message = '') {
  ui = null;
  document.title = 'Confab';
  const root = clear(document.getElementById('app'));
  const isRegister = mode === 'register';
  const username = field({ label: 'Username', name: 'username', autocomplete: 'username', required: true, maxlength: 32 });
  const password = field({ label: 'Password', name: 'password', type: 'password', autocomplete: isRegister ? 'new-password' : 'current-password', required: true });
  const email = isRegister ? field({ label: 'Email (optional)', name: 'email', type: 'email', autocomplete: 'email' }) : null;
  const formError = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'auth-error', hidden: !message, text: message });
  const submit = h('button', { type: 'submit', class: 'btn primary block', text: isRegister ? 'Register' : 'Log in' });
  const form = h('form', { class: 'auth-card', 'aria-label': isRegister ? 'Register' : 'Log in', novalidate: true },
    h('h1', { text: isRegister ? 'Create an account' : 'Welcome back!' }),
    h('p', { class: 'muted', text: isRegister ? 'Join your friends on Confab.' : 'We\'re so excited to see you again!' }),
    formError, username.el, password.el, email && email.el, submit,
    h('p', { class: 'muted small' },
      isRegister ? 'Already have an account? ' : 'Need an account? ',
      h('button', { type: 'button', class: 'link-btn', text: isRegister ? 'Log in' : 'Register',
        onclick: () => showAuth(isRegister ? 'login' : 'register') })),
    pendingInvite ? h('p', { class: 'muted small', text: `You've been invited to join a server (invite ${pendingInvite}). Log in to accept.` }) : null,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errs = {};
    const u = username.input.value.trim();
    const p = password.input.value;
    if (!u) errs.username = ['Username is required.'];
    if (!p) errs.password = ['Password is required.'];
    else if (isRegister && p.length < 8) errs.password = ['Password must be at least 8 characters.'];
    showFieldErrors(form, errs);
    formError.hidden = true;
    if (Object.keys(errs).length) return;
    submit.disabled = true;
    try {
      if (isRegister) await api.register(u, p, email.input.value.trim() || undefined);
      else await api.login(u, p);
      startApp();
    } catch (err) {
      showFieldErrors(form, err.errors || {});
      formError.textContent = err.message || 'Something went wrong';
      formError.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('div', { class: 'auth-page' }, form));
  username.input.focus();
}

// =====================================================================================
// Shell

function startApp() {
  store.reset();
  buildShell();
  if (!voice) {
    voice = new Voice({
      gateway,
      getSelfId: () => store.me && store.me.id,
      getVoiceStates: (channelId) => store.voiceStatesIn(channelId),
    });
    window.confabVoice = voice;
    let lastVoiceError = null;
    voice.onChange(() => {
      rememberVoiceChannel();
      if (voice.error && voice.error !== lastVoiceError) toast(`Voice: ${voice.error}`, 'error');
      lastVoiceError = voice.error;
      renderVoicePanel();
      renderChannels();
    });
    videoGrid = new VideoGrid({ voice, store });
    window.confabVideo = videoGrid;
    if (ui) ui.videoHost.append(videoGrid.el);
  }
  gateway.connect();
}

function buildShell() {
  const root = clear(document.getElementById('app'));
  const serverList = h('ul', { class: 'server-list', 'data-testid': 'server-list' });
  const rail = h('nav', { class: 'rail', 'aria-label': 'Servers' },
    serverList,
    h('div', { class: 'rail-sep' }),
    tooltip(h('button', { class: 'rail-btn add', 'aria-label': 'Create server', 'data-testid': 'create-server', onclick: createServerDialog }, icon('plus', 24)), 'Create a server'),
    tooltip(h('button', { class: 'rail-btn join', 'aria-label': 'Join a server', 'data-testid': 'join-server', onclick: () => joinServerDialog() }, icon('compass', 24)), 'Join a server with an invite'),
  );
  const serverHeader = h('header', { class: 'server-header', 'data-testid': 'server-header' });
  const channelList = h('nav', { class: 'channel-list', 'aria-label': 'Channels', 'data-testid': 'channel-list' });
  const voicePanel = h('section', { class: 'voice-panel', 'aria-label': 'Voice connection', 'data-testid': 'voice-panel', hidden: true });
  const userPanel = h('footer', { class: 'user-panel', 'data-testid': 'user-panel' });
  const sidebar = h('aside', { class: 'sidebar', id: 'sidebar' }, serverHeader, channelList, voicePanel, userPanel);

  const chatHeader = h('header', { class: 'chat-header', 'data-testid': 'chat-header' });
  const status = h('div', { class: 'conn-status', role: 'status', 'data-testid': 'connection-status', hidden: true });
  // A list (its items must stay list items for screen readers), announced politely as it grows.
  const messages = h('ol', { class: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite', 'aria-relevant': 'additions', 'data-testid': 'message-list', tabindex: '0' });
  messages.addEventListener('scroll', onMessagesScroll, { passive: true });
  const typing = h('div', { class: 'typing', 'data-testid': 'typing-indicator', 'aria-live': 'polite' });
  const composerInput = h('textarea', { rows: 1, class: 'composer-input', 'data-testid': 'composer', 'aria-label': 'Message', placeholder: 'Message' });
  const counter = h('div', { class: 'char-counter', 'data-testid': 'char-counter', 'aria-live': 'polite', hidden: true });
  const composerError = h('p', { class: 'composer-error', role: 'alert', 'data-testid': 'composer-error', hidden: true });
  const composer = h('form', { class: 'composer', 'aria-label': 'Send a message' }, composerInput, counter,
    h('button', { type: 'submit', class: 'icon-btn send', 'aria-label': 'Send message', text: '➤' }));
  // The autocomplete's keys (Enter, Tab, arrows, Escape) win while its list is open.
  attachMentionAutocomplete(composerInput, { container: composer });
  composerInput.addEventListener('keydown', onComposerKey);
  composerInput.addEventListener('input', onComposerInput);
  composer.addEventListener('submit', (e) => { e.preventDefault(); sendFromComposer(); });
  // The friends page takes the message list's place on the home screen (no DM selected).
  const friendsPage = h('section', { class: 'friends-page', 'aria-label': 'Friends', 'data-testid': 'friends-page', hidden: true });
  // Shown instead of the messages while one is in no server yet (right after registering).
  const welcome = h('section', { class: 'welcome', 'aria-labelledby': 'welcome-title', 'data-testid': 'welcome', hidden: true });
  // The voice channel's video tiles sit above the messages while we are in voice.
  const videoHost = h('div', { class: 'video-host' }, videoGrid ? videoGrid.el : null);
  const chat = h('main', { class: 'chat' }, chatHeader, status, videoHost, welcome, friendsPage, messages, h('div', { class: 'composer-wrap' }, typing, composerError, composer));
  const members = h('aside', { class: 'members', id: 'members', 'aria-label': 'Members', 'data-testid': 'member-list' });
  // Behind an open drawer (narrow windows): a click closes it.
  const backdrop = h('div', { class: 'drawer-backdrop', 'aria-hidden': 'true', 'data-testid': 'drawer-backdrop', onclick: closeDrawers });

  // The first Tab stop: straight to the message box, past the server and channel lists.
  const skip = h('button', { type: 'button', class: 'skip-link', 'data-testid': 'skip-link', text: 'Skip to the message box',
    onclick: () => { if (!ui.composer.hidden) ui.composerInput.focus(); else ui.messages.focus(); } });
  const rejoin = h('div', { class: 'rejoin-banner', role: 'region', 'aria-label': 'Rejoin voice', 'data-testid': 'rejoin-voice', hidden: true });
  chat.insertBefore(rejoin, videoHost);
  // Phone width: the voice panel is in the drawer; this bar says one is in voice and opens it.
  const voiceBar = h('button', { type: 'button', class: 'voice-bar', 'data-testid': 'voice-bar', hidden: true,
    onclick: () => { if (!ui.shell.classList.contains('show-sidebar')) toggleDrawer('sidebar'); ui.voicePanel.querySelector('[data-testid="voice-mute"]')?.focus(); } });
  chat.insertBefore(voiceBar, rejoin);

  const shell = h('div', { class: 'shell' }, skip, rail, sidebar, chat, members, backdrop);
  root.append(shell);
  ui = { shell, serverList, serverHeader, channelList, voicePanel, userPanel, chatHeader, status, videoHost, messages, typing, composerInput, composer, counter, composerError, members, friendsPage, welcome, rejoin, voiceBar };
  // A channel mention in a message opens that channel.
  messages.addEventListener('click', (e) => {
    const el = e.target.closest && e.target.closest('.mention.channel[data-mention-id]');
    if (!el) return;
    const c = store.findChannel(el.dataset.mentionId);
    if (!c) return;
    if (isVoiceChannel(c)) joinVoice(c);
    else if (c.type === 'text') { if (c.server_id !== store.currentServerId) selectServer(c.server_id); selectChannel(c.id); }
  });
  renderAll();
}

function renderAll() {
  renderServers(); renderServerHeader(); renderChannels(); renderHeader(); renderMessages({ reset: true });
  renderTyping(); renderComposer(); renderMembers(); renderVoicePanel(); renderUserPanel(); renderStatus();
  renderHome();
}

/** The friends page when home with no DM open; the chat view otherwise. */
function renderHome() {
  const show = store.home && !store.currentChannelId;
  const welcome = !store.home && !store.server;
  ui.friendsPage.hidden = !show;
  ui.welcome.hidden = !welcome;
  ui.messages.hidden = show || welcome;
  if (show) renderFriendsPage(ui.friendsPage);
  else clear(ui.friendsPage);
  if (welcome) renderWelcome(ui.welcome);
  else clear(ui.welcome);
}

function renderWelcome(el) {
  clear(el);
  const me = store.me;
  el.append(
    h('h2', { id: 'welcome-title', text: `Welcome to Confab${me ? `, ${me.display_name || me.username}` : ''}!` }),
    h('p', { class: 'muted', text: 'Servers are where you and your friends talk, by text and by voice. Start your own, or join one with an invite link a friend sent you.' }),
    h('div', { class: 'welcome-actions' },
      h('button', { type: 'button', class: 'btn primary welcome-btn', 'data-testid': 'welcome-create', onclick: createServerDialog },
        icon('plus', 20), h('span', { text: 'Create a server' })),
      h('button', { type: 'button', class: 'btn secondary welcome-btn', 'data-testid': 'welcome-join', onclick: () => joinServerDialog() },
        icon('compass', 20), h('span', { text: 'Join with an invite' }))),
    h('p', { class: 'muted small' }, 'Looking for a friend? Open ',
      h('button', { type: 'button', class: 'link-btn', text: 'Direct messages', onclick: () => selectServer(HOME_ID) }), ' to add them.'));
}

// Batch re-renders per microtask.
let pendingTopics = new Set();
let flushQueued = false;
function invalidate(topics) {
  for (const t of topics) pendingTopics.add(t);
  if (flushQueued) return;
  flushQueued = true;
  queueMicrotask(() => {
    flushQueued = false;
    const t = pendingTopics;
    pendingTopics = new Set();
    if (!ui) return;
    if (t.has('all') || t.has('servers')) { ensureRoles(store.currentServerId); ensureMembers(store.currentServerId); }
    onTopics(t);
    if (t.has('all')) { renderAll(); ensureMessagesLoaded(); ackIfViewing(); return; }
    if (t.has('servers')) { renderServers(); renderHome(); }
    if (t.has('servers') || t.has('header')) renderServerHeader();
    if (t.has('channels')) renderChannels();
    if (t.has('header')) renderHeader();
    if (t.has('messages') || t.has('reactions') || t.has('pins')) renderMessages();
    if (t.has('typing')) renderTyping();
    if (t.has('composer')) renderComposer();
    if (t.has('members')) renderMembers();
    if (t.has('voice')) renderVoicePanel();
    if (t.has('userpanel')) renderUserPanel();
    if (t.has('home')) { renderHome(); if (store.home) { renderChannels(); renderMembers(); } }
    if (t.has('messages') || t.has('channels')) ackIfViewing();
  });
}
store.subscribe(invalidate);

// =====================================================================================
// Gateway → store

gateway.on('*', (t, d) => {
  if (!d && t !== 'RESUMED') return;
  const topics = store.apply(t, d || {});
  if (topics.length) invalidate(topics);
  if (t === 'READY') {
    onReady();
  } else if (t === 'SERVER_CREATE' && awaitingServer && awaitingServer === d.id) {
    awaitingServer = null;
    selectServer(d.id);
  } else if (t === 'TYPING_START') {
    setTimeout(() => invalidate(['typing']), 10100);
  } else if (t === 'SERVER_DELETE' && voice && voice.serverId === d.id) {
    voice.leave();
  }
});
gateway.on('AUTH_FAILED', () => { api.clearTokens(); logoutLocal('Your session expired. Please log in again.'); });
gateway.onStatus(() => renderStatus());

let awaitingServer = null;

function onReady() {
  ensureMessagesLoaded();
  offerVoiceRejoin();
  if (pendingInvite) {
    const code = pendingInvite;
    pendingInvite = null;
    history.replaceState(null, '', '/');
    joinServerDialog(code);
  }
}

// =====================================================================================
// Rendering: server rail

function renderServers() {
  const list = clear(ui.serverList);
  list.append(homeButton());
  for (const s of store.servers.values()) {
    const active = s.id === store.currentServerId;
    const initials = s.name.split(/\s+/).filter(Boolean).map((w) => [...w][0]).slice(0, 3).join('') || '?';
    const b = serverRailBadge(s);
    // Named by its full name (hidden text), shown by its initials (hidden from screen readers).
    list.append(h('li', { class: `rail-item${b.unread ? ' unread' : ''}` },
      tooltip(h('button', {
        class: `rail-btn server${active ? ' active' : ''}`,
        'aria-current': active ? 'page' : null,
        'data-testid': 'server-button', 'data-server-id': s.id, 'data-unread': String(b.unread),
        onclick: () => selectServer(s.id),
      }, h('span', { 'aria-hidden': 'true', text: initials }), h('span', { class: 'sr-only', text: s.name })), s.name), b.badge));
  }
}

function selectServer(id) {
  closePins();
  store.selectServer(id);
  closeSidebarOnMobile();
  invalidate(['all']);
}

function renderServerHeader() {
  const el = clear(ui.serverHeader);
  if (store.home) { renderHomeHeader(el); return; }
  const s = store.server;
  if (!s) {
    el.append(h('h2', { text: 'No server yet' }));
    return;
  }
  const owner = store.isOwner();
  el.append(
    h('h2', { text: s.name, title: s.name, 'data-testid': 'server-name' }),
    h('div', { class: 'header-actions' },
      canOpenServerSettings(s.id) ? h('button', { class: 'icon-btn', 'aria-label': 'Server settings', title: 'Server settings', 'data-testid': 'server-settings', onclick: () => serverSettingsDialog() }, icon('gear')) : null,
      h('button', { class: 'icon-btn', 'aria-label': 'Invite people', title: 'Invite people', 'data-testid': 'invite-people', onclick: inviteDialog }, icon('invite')),
      owner ? h('button', { class: 'icon-btn', 'aria-label': 'Create channel', title: 'Create channel', 'data-testid': 'create-channel', text: '+', onclick: () => createChannelDialog() }) : null,
      owner ? h('button', { class: 'icon-btn', 'aria-label': 'Rename server', title: 'Rename server', text: '✎', onclick: renameServerDialog }) : null,
      owner
        ? h('button', { class: 'icon-btn danger', 'aria-label': 'Delete server', title: 'Delete server', onclick: deleteServerDialog }, icon('trash'))
        : h('button', { class: 'icon-btn danger', 'aria-label': 'Leave server', title: 'Leave server', onclick: leaveServerDialog }, icon('leave')),
    ),
  );
}

// =====================================================================================
// Rendering: channel list (+ voice participants)

function renderChannels() {
  if (!ui) return;
  const el = clear(ui.channelList);
  if (store.home) { renderDmSidebar(el); return; }
  const s = store.server;
  if (!s) {
    el.append(h('p', { class: 'muted pad', text: 'Create a server or join one with an invite to get started.' }));
    return;
  }
  const all = sortChannels([...s.channels.values()]);
  const cats = all.filter((c) => c.type === 'category');
  const catIds = new Set(cats.map((c) => c.id));
  const top = all.filter((c) => c.type !== 'category' && (!c.parent_id || !catIds.has(c.parent_id)));
  // Edit controls for those who may change channels or their permissions (the server decides).
  const owner = store.isOwner() || store.can(PERM.MANAGE_CHANNELS) || store.can(PERM.MANAGE_ROLES);
  const ul = h('ul', { class: 'channels' });
  for (const c of top) ul.append(channelRow(c, owner));
  el.append(ul);
  for (const cat of cats) {
    const children = all.filter((c) => c.parent_id === cat.id && c.type !== 'category');
    el.append(h('section', { class: 'category', 'data-testid': 'category', 'data-category-name': cat.name },
      h('header', { class: 'category-head' },
        h('h3', { text: cat.name.toUpperCase() }),
        owner ? h('span', { class: 'row-actions' },
          h('button', { class: 'icon-btn tiny', 'aria-label': `Create channel in ${cat.name}`, text: '+', onclick: () => createChannelDialog(cat.id) }),
          h('button', { class: 'icon-btn tiny', 'aria-label': `Rename category ${cat.name}`, text: '✎', onclick: () => editChannelDialog(cat) }),
          h('button', { class: 'icon-btn tiny danger', 'aria-label': `Delete category ${cat.name}`, text: '✕', onclick: () => deleteChannelDialog(cat) })) : null),
      h('ul', { class: 'channels' }, children.map((c) => channelRow(c, owner)))));
  }
}

function channelRow(c, owner) {
  const isVoice = isVoiceChannel(c);
  const active = !isVoice && c.id === store.currentChannelId;
  const connectedHere = isVoice && voice && voice.channelId === c.id;
  const badge = c.type === 'text' ? channelBadge(c) : { unread: false, badge: null };
  const li = h('li', { class: `channel ${c.type}${active ? ' active' : ''}${connectedHere ? ' connected' : ''}${badge.unread ? ' unread' : ''}` });
  const btn = h('button', {
    class: 'channel-link',
    'data-testid': 'channel-link', 'data-channel-id': c.id, 'data-channel-name': c.name, 'data-channel-type': c.type, 'data-unread': String(badge.unread),
    'aria-label': isVoice ? `Join ${c.type === 'stage' ? 'stage' : 'voice'} channel ${c.name}` : `Text channel ${c.name}`,
    'aria-current': active ? 'page' : null,
    onclick: () => (isVoice ? joinVoice(c) : selectChannel(c.id)),
  }, h('span', { class: 'chan-icon', 'aria-hidden': 'true' }, icon(c.type === 'stage' ? 'stage' : isVoice ? 'speaker' : 'hash', 16)), h('span', { class: 'chan-name', text: c.name }));
  li.append(h('div', { class: 'channel-row' }, btn, badge.badge,
    owner ? h('span', { class: 'row-actions' },
      h('button', { class: 'icon-btn tiny', 'aria-label': `Edit channel ${c.name}`, title: 'Edit channel', text: '✎', onclick: () => editChannelDialog(c) }),
      h('button', { class: 'icon-btn tiny danger', 'aria-label': `Delete channel ${c.name}`, title: 'Delete channel', text: '✕', onclick: () => deleteChannelDialog(c) })) : null));
  if (isVoice) {
    const states = store.voiceStatesIn(c.id);
    if (states.length) {
      const ul = h('ul', { class: 'voice-users', 'data-testid': 'voice-participants', 'data-channel-id': c.id });
      // In our own channel: whom we hear now (large channels carry only the loudest few).
      const heard = voice && voice.channelId === c.id ? voice.heardUsers() : null;
      // Marked only when some participants are not carried to us.
      const limited = !!heard && states.length - 1 > heard.size;
      const row = (v) => {
        const speaking = !!(voice && voice.speaking[v.user_id]) && !(v.self_mute || v.mute || v.suppress);
        const user = store.userById(v.user_id);
        const isHeard = !!(heard && heard.has(v.user_id));
        return h('li', {
          class: `voice-user${speaking ? ' speaking' : ''}${limited && isHeard ? ' heard' : ''}`,
          'data-testid': 'voice-participant', 'data-user-id': v.user_id, 'data-heard': String(isHeard),
          title: limited ? (isHeard ? 'Heard now (one of the loudest speakers)' : 'Not heard right now: only the loudest speakers are carried') : undefined,
          'data-speaking': String(speaking), 'data-muted': String(!!(v.self_mute || v.mute)), 'data-deafened': String(!!(v.self_deaf || v.deaf)),
          'data-suppressed': String(!!v.suppress),
        },
        avatar(user || { id: v.user_id }, 22, speaking ? 'ring' : ''),
        h('span', { class: 'vu-name', text: store.displayName(v.user_id, user, c.server_id) }),
        (v.self_mute || v.mute) ? h('span', { role: 'img', class: 'vu-icon', title: v.mute ? 'Server muted' : 'Muted', 'aria-label': 'muted' }, icon('micOff', 14)) : null,
        (v.suppress && c.type !== 'stage' && !(v.self_mute || v.mute)) ? h('span', { role: 'img', class: 'vu-icon', title: 'May not speak in this channel', 'aria-label': 'suppressed' }, icon('micOff', 14)) : null,
        (v.self_deaf || v.deaf) ? h('span', { role: 'img', class: 'vu-icon', title: v.deaf ? 'Server deafened' : 'Deafened', 'aria-label': 'deafened' }, icon('headphonesOff', 14)) : null,
        v.self_stream ? h('span', { role: 'img', class: 'vu-icon live', title: 'Sharing their screen', 'aria-label': 'sharing screen' }, icon('screen', 14)) : null,
        v.self_video ? h('span', { role: 'img', class: 'vu-icon live', title: 'Camera on', 'aria-label': 'camera on' }, icon('video', 14)) : null);
      };
      if (c.type === 'stage') ul.append(...stageParticipants(c, states, row));
      else for (const v of states) ul.append(row(v));
      li.append(ul);
    }
  }
  return li;
}

function selectChannel(id) {
  closePins();
  store.selectChannel(id);
  closeSidebarOnMobile();
  invalidate(['channels', 'header', 'typing', 'composer', 'home', 'members']);
  renderMessages({ reset: true });
  ensureMessagesLoaded();
}

// =====================================================================================
// Rendering: header, status, members, user panel

function renderHeader() {
  renderHeaderInner();
  syncDrawerButtons();
}

function renderHeaderInner() {
  const el = clear(ui.chatHeader);
  const c = store.channel;
  el.append(h('button', { class: 'icon-btn menu-btn', 'aria-label': 'Toggle channel list', 'aria-controls': 'sidebar', 'aria-expanded': String(ui.shell.classList.contains('show-sidebar')), 'data-testid': 'menu-button', text: '☰', onclick: () => toggleDrawer('sidebar') }));
  if (!c) { el.append(h('h2', { text: store.home ? 'Friends' : store.server ? 'No text channel' : 'Confab' })); document.title = 'Confab'; return; }
  if (isPrivate(c)) {
    el.append(h('h2', { 'data-testid': 'channel-title', text: channelTitle(store, c) }));
    document.title = `${channelTitle(store, c)} · Confab`;
    return;
  }
  el.append(h('h2', { 'data-testid': 'channel-title' }, h('span', { class: 'muted', text: '# ' }), c.name));
  if (c.topic) el.append(h('span', { class: 'topic', text: c.topic, title: c.topic }));
  el.append(h('button', { class: 'icon-btn pins-btn', 'aria-label': 'Pinned messages', title: 'Pinned messages', 'aria-haspopup': 'dialog', 'aria-expanded': 'false', 'data-testid': 'pins-button', onclick: (e) => togglePins(c, e.currentTarget) }, icon('pin')));
  el.append(h('button', { class: 'icon-btn members-btn', 'aria-label': 'Toggle member list', 'aria-controls': 'members', title: 'Member list', 'data-testid': 'members-button', onclick: () => toggleDrawer('members') }, icon('users')));
  document.title = `#${c.name} · ${store.server ? store.server.name : ''} · Confab`;
}

function renderStatus() {
  if (!ui) return;
  const s = gateway.status;
  ui.status.hidden = s === 'ready';
  ui.status.textContent = s === 'reconnecting' ? 'Connection lost. Reconnecting… (messages you missed will follow)'
    : s === 'connecting' ? 'Connecting…'
      : s === 'disconnected' ? 'Disconnected from the server. Reload the page to connect again.' : '';
}

function renderMembers() {
  const el = clear(ui.members);
  if (store.home) { renderDmMembers(el); return; }
  const s = store.server;
  if (!s) return;
  const members = [...s.members.values()];
  const status = (m) => {
    const st = store.presences.get(m.user.id) || 'offline';
    return st === 'invisible' ? 'offline' : st;
  };
  const name = (m) => (m.nickname || m.user.display_name || m.user.username || '').toLowerCase();
  const online = members.filter((m) => status(m) !== 'offline').sort((a, b) => name(a).localeCompare(name(b)));
  const offline = members.filter((m) => status(m) === 'offline').sort((a, b) => name(a).localeCompare(name(b)));
  const group = (title, list) => {
    if (!list.length) return null;
    return h('section', { class: 'member-group' },
      h('h3', { text: `${title} — ${list.length}` }),
      h('ul', {}, list.map((m) => {
        const st = status(m);
        const dn = store.displayName(m.user.id, m.user, s.id);
        const colour = store.memberColor(s.id, m.user.id);
        const nameEl = h('button', { type: 'button', class: 'member-name', text: dn, 'aria-haspopup': 'dialog', 'data-testid': 'member-open', title: colour ? colour.role.name : null, onclick: () => memberDialog(s, m) });
        if (colour) nameEl.style.color = readableOn(colour.color);
        return h('li', { class: `member ${st}`, 'data-testid': 'member', 'data-user-id': m.user.id, 'data-status': st, 'data-role-color': colour ? colour.color : null },
          h('span', { class: 'avatar-wrap', onclick: () => memberDialog(s, m) }, avatar(m.user, 32), h('span', { role: 'img', class: `presence-dot ${st}`, 'aria-label': st, title: st, 'data-testid': 'presence-dot' })),
          h('span', { class: 'member-text' },
            nameEl,
            m.user.custom_status ? h('span', { class: 'member-status', text: m.user.custom_status }) : null),
          s.owner_id === m.user.id ? h('span', { role: 'img', class: 'crown', title: 'Server owner', 'aria-label': 'Server owner' }, icon('crown', 14)) : null);
      })));
  };
  add(el, group('Online', online), group('Offline', offline),
    s.large && !s.membersLoaded ? h('p', { class: 'muted small', 'data-testid': 'members-loading', text: 'Loading members…' }) : null);
}

function renderUserPanel() {
  const el = clear(ui.userPanel);
  const me = store.me;
  if (!me) return;
  el.append(
    h('span', { class: 'avatar-wrap' }, avatar(me, 32), h('span', { class: 'presence-dot online' })),
    h('span', { class: 'me-text' },
      h('span', { class: 'me-name', 'data-testid': 'me-name', text: me.display_name || me.username }),
      h('span', { class: 'me-status', text: me.custom_status || `@${me.username}` })),
    h('button', { class: 'icon-btn', 'aria-label': 'User settings', title: 'User settings', 'data-testid': 'open-settings', onclick: settingsDialog }, icon('gear')),
  );
}

// =====================================================================================
// Messages

async function ensureMessagesLoaded() {
  const id = store.currentChannelId;
  if (!id) return;
  const st = store.msgState(id);
  if (st.loaded || st.loading) return;
  st.loading = true;
  try {
    const page = await api.messages(id, { limit: 50 });
    // keep anything that arrived live meanwhile (pending sends)
    const pending = st.list.filter((m) => m.pending);
    st.list = page.slice().reverse().concat(pending);
    st.hasMore = page.length >= 50;
    st.loaded = true;
  } catch (e) {
    toast(`Could not load messages: ${e.message}`, 'error');
  } finally {
    st.loading = false;
  }
  if (store.currentChannelId === id) renderMessages({ reset: true });
  // Which messages are pinned (for the Pin/Unpin action); one request per channel.
  loadPins(id).then(() => { if (store.currentChannelId === id) renderMessages(); }).catch(() => {});
}

async function loadOlder() {
  const id = store.currentChannelId;
  if (!id) return;
  const st = store.msgState(id);
  if (!st.loaded || st.loading || !st.hasMore) return;
  const oldest = st.list.find((m) => !m.pending);
  if (!oldest) { st.hasMore = false; return; }
  st.loading = true;
  renderLoadingMarker(true);
  try {
    const page = await api.messages(id, { before: oldest.id, limit: 50 });
    const have = new Set(st.list.map((m) => m.id));
    const older = page.slice().reverse().filter((m) => !have.has(m.id));
    st.list = older.concat(st.list);
    st.hasMore = page.length >= 50;
  } catch (e) {
    toast(`Could not load older messages: ${e.message}`, 'error');
  } finally {
    st.loading = false;
  }
  if (store.currentChannelId === id) renderMessages({ prepend: true });
}

function onMessagesScroll() {
  if (ui.messages.scrollTop < 150) loadOlder();
}

function renderLoadingMarker(on) {
  const existing = ui.messages.querySelector('.loading-older');
  if (on && !existing) ui.messages.prepend(h('li', { class: 'loading-older muted', text: 'Loading older messages…' }));
  if (!on && existing) existing.remove();
}

function dayKey(d) { return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`; }
function dayLabel(d) {
  const today = new Date();
  const y = new Date(); y.setDate(today.getDate() - 1);
  if (dayKey(d) === dayKey(today)) return 'Today';
  if (dayKey(d) === dayKey(y)) return 'Yesterday';
  return d.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}
function timeLabel(d) { return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }); }

function renderMessages({ reset = false, prepend = false } = {}) {
  if (!ui) return;
  const el = ui.messages;
  const id = store.currentChannelId;
  const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 120;
  const prevHeight = el.scrollHeight;
  const prevTop = el.scrollTop;
  // Keep an in-progress edit's focus/selection across re-renders.
  const editFocused = document.activeElement && document.activeElement.dataset.testid === 'edit-input';
  const editSel = editFocused ? [document.activeElement.selectionStart, document.activeElement.selectionEnd] : null;
  clear(el);
  if (!id) return;
  const st = store.msgState(id);
  if (!st.loaded) {
    el.append(h('li', { class: 'muted pad', text: st.loading ? 'Loading messages…' : '' }));
    return;
  }
  const c = store.channel;
  if (!st.hasMore) {
    el.append(h('li', { class: 'channel-start', 'data-testid': 'channel-start' },
      h('h3', { text: `Welcome to ${channelTitle(store, c)}!` }),
      h('p', { class: 'muted', text: isPrivate(c) ? `This is the start of your conversation with ${channelTitle(store, c)}.` : `This is the start of the #${c ? c.name : ''} channel.` })));
  } else if (st.loading) {
    el.append(h('li', { class: 'loading-older muted', text: 'Loading older messages…' }));
  }
  let prev = null;
  for (const m of st.list) {
    const date = new Date(m.created_at || Date.now());
    const newDay = !prev || dayKey(new Date(prev.created_at || Date.now())) !== dayKey(date);
    if (newDay) {
      el.append(h('li', { class: 'day-sep', 'data-testid': 'day-separator' }, h('span', { text: dayLabel(date) })));
    }
    const grouped = !newDay && prev && prev.author && m.author && prev.author.id === m.author.id &&
      (date - new Date(prev.created_at)) < GROUP_MS;
    el.append(messageItem(m, grouped, date));
    prev = m;
  }
  if (editFocused) {
    const input = el.querySelector('[data-testid="edit-input"]');
    if (input) { input.focus(); input.setSelectionRange(editSel[0], editSel[1]); }
  }
  if (prepend) el.scrollTop = el.scrollHeight - prevHeight + prevTop;
  else if (reset || atBottom) el.scrollTop = el.scrollHeight;
}

function messageItem(m, grouped, date) {
  rememberUser(m.author);
  const mine = store.me && m.author && m.author.id === store.me.id;
  const name = store.displayName(m.author && m.author.id, m.author, m.server_id);
  const li = h('li', {
    class: `msg${grouped ? ' cont' : ''}${m.pending ? ' pending' : ''}${m.failed ? ' failed' : ''}${!m.pending && mentionsMe(store, m) ? ' mentions-me' : ''}`,
    'data-testid': 'message', 'data-message-id': m.id, 'data-author-id': m.author && m.author.id,
  });
  if (!grouped) {
    li.append(avatar(m.author, 40, 'msg-avatar'),
      h('div', { class: 'msg-head' },
        h('span', { class: 'author', 'data-testid': 'message-author', text: name }),
        h('time', { datetime: m.created_at, title: date.toLocaleString(), text: `${dayLabel(date)} at ${timeLabel(date)}` })));
  } else {
    li.append(h('time', { class: 'hover-time', datetime: m.created_at, title: date.toLocaleString(), text: timeLabel(date) }));
  }
  const editing = store.editing && store.editing.id === m.id;
  if (editing) {
    const input = h('textarea', { class: 'edit-input', 'data-testid': 'edit-input', 'aria-label': 'Edit message', rows: 2 });
    input.value = store.editing.draft;
    const editWrap = h('div', { class: 'edit-wrap' }, input);
    attachMentionAutocomplete(input, { container: editWrap });
    input.addEventListener('input', () => { if (store.editing) store.editing.draft = input.value; });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.preventDefault(); cancelEdit(); }
      else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); saveEdit(m); }
    });
    li.append(h('div', { class: 'msg-body' }, editWrap,
      h('div', { class: 'edit-hint muted small' }, 'escape to ',
        h('button', { class: 'link-btn', type: 'button', text: 'cancel', onclick: cancelEdit }), ' • enter to ',
        h('button', { class: 'link-btn', type: 'button', text: 'save', 'aria-label': 'Save edit', onclick: () => saveEdit(m) }))));
    queueMicrotask(() => { if (document.activeElement !== input && !input.dataset.focused) { input.dataset.focused = '1'; input.focus(); } });
  } else {
    const content = h('div', { class: 'content', 'data-testid': 'message-content' });
    content.append(renderMarkdown(m.content));
    // "(edited)" follows the last line of text, not a line of its own.
    const tail = content.lastElementChild && content.lastElementChild.classList.contains('md-p') ? content.lastElementChild : content;
    if (m.edited_at) tail.append(h('span', { class: 'edited', 'data-testid': 'edited-mark', title: new Date(m.edited_at).toLocaleString(), text: ' (edited)' }));
    if (m.failed) content.append(h('span', { class: 'failed-note', text: ` — not sent: ${m.failed}` }));
    li.append(h('div', { class: 'msg-body' }, content, m.pending ? null : reactionBar(m)));
  }
  if (!m.pending && !m.failed && !editing) {
    const pinned = pinnedIds(m.channel_id).has(m.id);
    const canPin = store.can(PERM.MANAGE_MESSAGES, m.server_id);
    const canDelete = mine || store.can(PERM.MANAGE_MESSAGES, m.server_id);
    li.append(h('div', { class: 'msg-actions' },
      h('button', { class: 'icon-btn tiny', 'aria-label': 'Add reaction', title: 'Add reaction', 'data-testid': 'add-reaction', onclick: (e) => openReactionPicker(m, e.currentTarget) }, icon('smile', 14)),
      canPin ? h('button', { class: `icon-btn tiny${pinned ? ' on' : ''}`, 'aria-label': pinned ? 'Unpin message' : 'Pin message', title: pinned ? 'Unpin' : 'Pin', 'data-testid': 'pin-message', 'aria-pressed': String(pinned), onclick: () => setPinned(m, !pinned) }, icon('pin', 14)) : null,
      mine ? h('button', { class: 'icon-btn tiny', 'aria-label': 'Edit message', title: 'Edit', 'data-testid': 'edit-message', text: '✎', onclick: () => startEdit(m) }) : null,
      canDelete ? h('button', { class: 'icon-btn tiny danger', 'aria-label': 'Delete message', title: 'Delete (shift-click skips the question)', 'data-testid': 'delete-message', onclick: (e) => deleteMessage(m, e.shiftKey) }, icon('trash', 14)) : null));
  }
  return li;
}

function startEdit(m) {
  store.editing = { id: m.id, draft: m.content };
  renderMessages();
}
function cancelEdit() {
  store.editing = null;
  renderMessages();
  ui.composerInput.focus();
}
async function saveEdit(m) {
  const draft = linkPlainMentions(store.editing ? store.editing.draft : m.content);
  if (!draft.trim()) { deleteMessage(m, false); return; }
  if (draft === m.content) { cancelEdit(); return; }
  const over = charCount(draft) - MAX_MESSAGE_CHARS;
  if (over > 0) { toast(tooLongText(over), 'error', 8000); return; }
  try {
    const updated = await api.editMessage(m.channel_id, m.id, draft);
    store.editing = null;
    store.apply('MESSAGE_UPDATE', updated);
    renderMessages();
    ui.composerInput.focus();
  } catch (e) {
    toast(`Could not edit the message: ${e.message}`, 'error', 8000);
  }
}

async function deleteMessage(m, skipConfirm) {
  if (!skipConfirm) {
    const preview = h('blockquote', { class: 'delete-preview' }, renderMarkdown(m.content));
    const ok = await openDialog({
      title: 'Delete message', testid: 'confirm-delete',
      content: [h('p', { text: 'Are you sure you want to delete this message?' }), preview],
      actions: [{ label: 'Cancel', value: false }, { label: 'Delete', kind: 'danger', submit: true, value: true }],
    });
    if (!ok) return;
  }
  try {
    await api.deleteMessage(m.channel_id, m.id);
    store.removeMessage(m.channel_id, m.id);
    renderMessages();
  } catch (e) {
    toast(`Could not delete the message: ${e.message}`, 'error', 8000);
  }
}

// ------------------------------------------------------------------ composer

function renderComposer() {
  const c = store.channel;
  // A "not sent" note belongs to the channel it was written in.
  if (ui.composerError.dataset.channel && ui.composerError.dataset.channel !== String(store.currentChannelId)) setComposerError('');
  ui.composer.hidden = !c;
  const label = c ? `Message ${channelTitle(store, c)}` : 'Message';
  ui.composerInput.placeholder = label;
  ui.composerInput.setAttribute('aria-label', label);
}

function renderTyping() {
  const el = clear(ui.typing);
  const id = store.currentChannelId;
  if (!id) return;
  const names = store.typers(id).map((u) => store.displayName(u));
  if (!names.length) return;
  let text;
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  else text = 'Several people are typing…';
  el.append(h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', { text }));
}

function onComposerKey(e) {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendFromComposer();
  } else if (e.key === 'ArrowUp' && !ui.composerInput.value) {
    const st = store.msgState(store.currentChannelId);
    const mine = [...st.list].reverse().find((m) => store.me && m.author && m.author.id === store.me.id && !m.pending);
    if (mine) { e.preventDefault(); startEdit(mine); }
  }
}

// The server's limit (chat/src/messages: MAX_CONTENT), counted in Unicode characters as it does.
const MAX_MESSAGE_CHARS = 4000;
// The counter appears when this few characters are left (Discord shows it near the limit too).
const COUNTER_FROM = 500;

function charCount(text) { let n = 0; for (const _ of text) n += 1; return n; }
function tooLongText(over) {
  return `Your message is ${over.toLocaleString('en')} character${over === 1 ? '' : 's'} over the ${MAX_MESSAGE_CHARS.toLocaleString('en')}-character limit. Shorten it, or split it into two messages.`;
}

/** The live character counter near the send button, and the "too long" note under it. */
function renderCounter() {
  const n = charCount(ui.composerInput.value);
  const left = MAX_MESSAGE_CHARS - n;
  const show = left <= COUNTER_FROM;
  ui.counter.hidden = !show;
  ui.counter.textContent = show ? String(left) : '';
  ui.counter.classList.toggle('over', left < 0);
  ui.counter.title = show ? `${n.toLocaleString('en')} of ${MAX_MESSAGE_CHARS.toLocaleString('en')} characters` : '';
  ui.counter.setAttribute('aria-label', left < 0 ? `${-left} characters over the limit` : `${left} characters left`);
  ui.composerInput.setAttribute('aria-invalid', String(left < 0));
  if (left >= 0 && ui.composerError.dataset.kind === 'length') setComposerError('');
}

function setComposerError(text, kind = '') {
  ui.composerError.textContent = text;
  ui.composerError.hidden = !text;
  ui.composerError.dataset.kind = kind;
  ui.composerError.dataset.channel = text ? String(store.currentChannelId) : '';
}

function onComposerInput() {
  const ta = ui.composerInput;
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`;
  renderCounter();
  const id = store.currentChannelId;
  if (!id || !ta.value.trim()) return;
  const now = Date.now();
  if (now - (lastTypingSent.get(id) || 0) >= TYPING_SEND_EVERY_MS) {
    lastTypingSent.set(id, now);
    api.typing(id).catch(() => {});
  }
}

function randomNonce() {
  const a = new Uint32Array(2);
  crypto.getRandomValues(a);
  return `${a[0].toString(36)}${a[1].toString(36)}`.slice(0, 25);
}

async function sendFromComposer() {
  const id = store.currentChannelId;
  const typed = ui.composerInput.value;
  if (!id || !typed.trim()) return;
  const over = charCount(typed) - MAX_MESSAGE_CHARS;
  if (over > 0) {
    // Nothing is lost and nothing is sent: say by how much, and keep the text to shorten.
    setComposerError(tooLongText(over), 'length');
    renderCounter();
    return;
  }
  const content = linkPlainMentions(typed);
  setComposerError('');
  ui.composerInput.value = '';
  ui.composerInput.style.height = 'auto';
  renderCounter();
  lastTypingSent.set(id, 0);
  const nonce = randomNonce();
  const st = store.msgState(id);
  const pending = {
    id: `pending-${nonce}`, channel_id: id, server_id: store.channel ? store.channel.server_id : null, author: store.me,
    content, nonce, created_at: new Date().toISOString(), edited_at: null, pending: true,
  };
  st.list.push(pending);
  renderMessages({ reset: true });
  try {
    const m = await api.sendMessage(id, content, nonce);
    store.putMessage(m);
  } catch (e) {
    pending.failed = e.message;
    pending.pending = false;
    // keep the text so the user can retry
    if (!ui.composerInput.value) { ui.composerInput.value = typed; renderCounter(); }
    setComposerError(`Message not sent: ${e.message}`, 'send');
    st.list.splice(st.list.indexOf(pending), 1);
  }
  if (store.currentChannelId === id) renderMessages();
}

// =====================================================================================
// Voice UI

async function joinVoice(c) {
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

function renderVoicePanel() {
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
      h('button', { class: `icon-btn${voiceSettingsOpen ? ' on' : ''}`, 'aria-label': 'Voice settings', 'aria-expanded': String(voiceSettingsOpen), 'data-testid': 'voice-settings', onclick: toggleVoiceSettings }, icon('gear')),
      h('button', { class: 'icon-btn danger', 'aria-label': 'Leave voice channel', 'data-testid': 'voice-leave', title: 'Disconnect', onclick: () => voice.leave() }, icon('leave'))),
    stagePanelButtons(c, store.me && store.voiceStates.get(store.me.id)),
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
  const ptt = h('input', { type: 'checkbox', id: 'ptt-toggle', 'data-testid': 'ptt-toggle' });
  ptt.checked = voice.pushToTalk;
  ptt.addEventListener('change', () => voice.setPushToTalk(ptt.checked));
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
  return h('div', { class: 'voice-settings', 'data-testid': 'voice-settings-box' },
    h('label', { class: 'small' }, 'Microphone', mic),
    h('label', { class: 'small' }, 'Speaker', spk),
    h('div', { class: 'ptt-row small' }, ptt, h('label', { for: 'ptt-toggle', text: 'Push to talk' }), keyBtn));
}

// =====================================================================================
// Dialogs: servers, channels, invites, settings

function createServerDialog() {
  const name = field({ label: 'Server name', name: 'name', value: store.me ? `${store.me.display_name || store.me.username}'s server` : '', required: true, maxlength: 100 });
  openDialog({
    title: 'Create a server', testid: 'create-server-dialog',
    content: [h('p', { class: 'muted', text: 'Your server is where you and your friends hang out.' }), name.el],
    actions: [
      { label: 'Cancel' },
      { label: 'Create', submit: true, onClick: async () => {
        const n = name.input.value.trim();
        if (!n) throw Object.assign(new Error('Give your server a name.'), { errors: { name: ['Required.'] } });
        const s = await api.createServer(n);
        await addServerFromRest(s);
      } },
    ],
  });
}

/** After creating/joining via REST: add the server right away (SERVER_CREATE may come later). */
async function addServerFromRest(s) {
  awaitingServer = s.id;
  if (!store.servers.has(s.id)) {
    try {
      const [channels, members] = await Promise.all([api.channels(s.id), api.members(s.id)]);
      if (!store.servers.has(s.id)) store.upsertServer({ ...s, channels, members });
    } catch {
      store.upsertServer(s);
    }
  }
  awaitingServer = null;
  selectServer(s.id);
}

async function joinServerDialog(prefill = '') {
  const code = field({ label: 'Invite link or code', name: 'code', value: prefill || '', placeholder: 'https://confab.example/invite/hTKzmak or hTKzmak', required: true });
  const preview = h('div', { class: 'invite-preview muted', 'data-testid': 'invite-preview' });
  const showPreview = async () => {
    const c = parseInviteCode(code.input.value);
    clear(preview);
    if (!c) return;
    try {
      const inv = await api.getInvite(c);
      if (parseInviteCode(code.input.value) !== c) return;
      preview.append(`You've been invited to join `, h('strong', { text: (inv.server && inv.server.name) || 'a server' }));
    } catch { /* invalid invite: shown on submit */ }
  };
  code.input.addEventListener('change', showPreview);
  if (prefill) showPreview();
  await openDialog({
    title: 'Join a server', testid: 'join-server-dialog',
    content: [h('p', { class: 'muted', text: 'Enter an invite below to join an existing server.' }), code.el, preview],
    actions: [
      { label: 'Cancel' },
      { label: 'Join server', submit: true, onClick: async () => {
        const c = parseInviteCode(code.input.value);
        if (!c) throw Object.assign(new Error('That doesn\'t look like an invite link or code.'), { errors: { code: ['Enter an invite code or link.'] } });
        let s;
        try { s = await api.joinInvite(c); } catch (e) {
          if (e instanceof ApiError && e.status === 404) throw Object.assign(new Error('This invite is invalid or has expired.'), { errors: { code: ['Invalid or expired invite.'] } });
          throw e;
        }
        await addServerFromRest(s);
      } },
    ],
  });
}

function renameServerDialog() {
  const s = store.server;
  if (!s) return;
  const name = field({ label: 'Server name', name: 'name', value: s.name, required: true, maxlength: 100 });
  openDialog({
    title: 'Rename server', content: [name.el],
    actions: [{ label: 'Cancel' }, { label: 'Save', submit: true, onClick: async () => {
      const updated = await api.updateServer(s.id, { name: name.input.value.trim() });
      store.apply('SERVER_UPDATE', updated);
      invalidate(['servers', 'header']);
    } }],
  });
}

function deleteServerDialog() {
  const s = store.server;
  if (!s) return;
  openDialog({
    title: `Delete '${s.name}'`, content: [h('p', { text: 'This cannot be undone. All channels and messages will be deleted.' })],
    actions: [{ label: 'Cancel' }, { label: 'Delete server', kind: 'danger', submit: true, onClick: async () => {
      await api.deleteServer(s.id);
      store.apply('SERVER_DELETE', { id: s.id });
      if (voice && voice.serverId === s.id) voice.leave();
      invalidate(['all']);
    } }],
  });
}

function leaveServerDialog() {
  const s = store.server;
  if (!s) return;
  openDialog({
    title: `Leave '${s.name}'`, content: [h('p', { text: 'You won\'t be able to rejoin unless you are re-invited.' })],
    actions: [{ label: 'Cancel' }, { label: 'Leave server', kind: 'danger', submit: true, onClick: async () => {
      if (voice && voice.serverId === s.id) voice.leave();
      await api.leaveServer(s.id);
      store.apply('SERVER_DELETE', { id: s.id });
      invalidate(['all']);
    } }],
  });
}

function categorySelect(server, selected) {
  const sel = h('select', { name: 'parent_id', 'aria-label': 'Category', 'data-testid': 'field-parent_id' },
    h('option', { value: '', text: 'No category' }),
    sortChannels([...server.channels.values()].filter((c) => c.type === 'category')).map((c) => h('option', { value: c.id, text: c.name })));
  sel.value = selected || '';
  return sel;
}

function createChannelDialog(parentId = null) {
  const s = store.server;
  if (!s) return;
  const name = field({ label: 'Channel name', name: 'name', placeholder: 'new-channel', required: true, maxlength: 100 });
  const type = h('select', { name: 'type', 'aria-label': 'Channel type', 'data-testid': 'field-type' },
    h('option', { value: 'text', text: 'Text' }), h('option', { value: 'voice', text: 'Voice' }), h('option', { value: 'stage', text: 'Stage' }), h('option', { value: 'category', text: 'Category' }));
  const parent = categorySelect(s, parentId);
  type.addEventListener('change', () => { parent.disabled = type.value === 'category'; });
  openDialog({
    title: 'Create channel', testid: 'create-channel-dialog',
    content: [
      h('div', { class: 'field' }, h('label', { text: 'Channel type' }), type, h('div', { class: 'field-error', 'data-error-for': 'type' })),
      name.el,
      h('div', { class: 'field' }, h('label', { text: 'Category' }), parent, h('div', { class: 'field-error', 'data-error-for': 'parent_id' })),
    ],
    actions: [{ label: 'Cancel' }, { label: 'Create channel', submit: true, onClick: async () => {
      const body = { name: name.input.value.trim(), type: type.value };
      if (type.value !== 'category' && parent.value) body.parent_id = parent.value;
      const c = await api.createChannel(s.id, body);
      store.apply('CHANNEL_CREATE', c);
      invalidate(['channels']);
      if (c.type === 'text') selectChannel(c.id);
    } }],
  });
}

function editChannelDialog(c) {
  const s = store.servers.get(c.server_id);
  const name = field({ label: c.type === 'category' ? 'Category name' : 'Channel name', name: 'name', value: c.name, required: true, maxlength: 100 });
  const topic = c.type === 'text' ? field({ label: 'Topic', name: 'topic', type: 'textarea', value: c.topic || '', maxlength: 1024 }) : null;
  const parent = c.type !== 'category' && s ? categorySelect(s, c.parent_id) : null;
  const permsBtn = h('button', { type: 'button', class: 'btn secondary', text: 'Edit permissions', 'aria-label': 'Channel permissions', 'data-testid': 'edit-channel-permissions',
    onclick: () => { document.querySelector('[data-testid="edit-channel-dialog"]')?.close(); channelPermissionsDialog(c); } });
  openDialog({
    title: `Edit ${c.type === 'category' ? 'category' : 'channel'}`, testid: 'edit-channel-dialog',
    content: [name.el, topic && topic.el,
      parent ? h('div', { class: 'field' }, h('label', { text: 'Category' }), parent, h('div', { class: 'field-error', 'data-error-for': 'parent_id' })) : null,
      h('div', { class: 'field' }, h('label', { text: 'Permissions' }), permsBtn)],
    actions: [{ label: 'Cancel' }, { label: 'Save', submit: true, onClick: async () => {
      const patch = {};
      const n = name.input.value.trim();
      if (n !== c.name) patch.name = n;
      if (topic && topic.input.value !== (c.topic || '')) patch.topic = topic.input.value;
      if (parent && (parent.value || null) !== (c.parent_id || null)) patch.parent_id = parent.value || null;
      if (!Object.keys(patch).length) return;
      const updated = await api.updateChannel(c.id, patch);
      store.apply('CHANNEL_UPDATE', updated);
      invalidate(['channels', 'header', 'composer']);
    } }],
  });
}

function deleteChannelDialog(c) {
  openDialog({
    title: `Delete ${c.type === 'category' ? 'category' : 'channel'}`, testid: 'delete-channel-dialog',
    content: [h('p', {}, 'Are you sure you want to delete ', h('strong', { text: c.type === 'text' ? `#${c.name}` : c.name }), '? This cannot be undone.')],
    actions: [{ label: 'Cancel' }, { label: 'Delete', kind: 'danger', submit: true, onClick: async () => {
      if (voice && voice.channelId === c.id) voice.leave();
      await api.deleteChannel(c.id);
      store.apply('CHANNEL_DELETE', c);
      invalidate(['channels', 'header', 'messages', 'typing', 'composer']);
      ensureMessagesLoaded();
    } }],
  });
}

function inviteLink(code) { return `${location.origin}/invite/${code}`; }

function inviteBox() {
  const box = h('div', { class: 'invite-box', 'data-testid': 'invite-box' });
  const s = store.server;
  if (!s) { box.append(h('p', { class: 'muted', text: 'Select a server first.' })); return box; }
  const out = h('input', { type: 'text', readonly: true, 'aria-label': 'Invite link', 'data-testid': 'invite-link', placeholder: 'Create an invite to get a link' });
  const maxAge = h('select', { 'aria-label': 'Expire after', 'data-testid': 'invite-max-age' },
    h('option', { value: '1800', text: '30 minutes' }), h('option', { value: '3600', text: '1 hour' }),
    h('option', { value: '86400', text: '1 day' }), h('option', { value: '604800', text: '7 days' }), h('option', { value: '0', text: 'Never' }));
  maxAge.value = '604800';
  const maxUses = h('select', { 'aria-label': 'Max uses', 'data-testid': 'invite-max-uses' },
    h('option', { value: '0', text: 'No limit' }), h('option', { value: '1', text: '1 use' }), h('option', { value: '5', text: '5 uses' }),
    h('option', { value: '25', text: '25 uses' }), h('option', { value: '100', text: '100 uses' }));
  // Temporary: who joins through it leaves when they go offline, unless given a role.
  const temporary = h('input', { type: 'checkbox', 'data-testid': 'invite-temporary', title: 'Members leave when they go offline unless given a role' });
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const copy = h('button', { type: 'button', class: 'btn secondary', text: 'Copy', 'aria-label': 'Copy invite link', 'data-testid': 'copy-invite', disabled: true });
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(out.value); copy.textContent = 'Copied'; } catch {
      out.select(); document.execCommand && document.execCommand('copy'); copy.textContent = 'Copied';
    }
    setTimeout(() => { copy.textContent = 'Copy'; }, 2000);
  });
  const create = h('button', { type: 'button', class: 'btn primary', text: 'Create invite', 'aria-label': 'Create invite', 'data-testid': 'create-invite' });
  create.addEventListener('click', async () => {
    err.hidden = true;
    create.disabled = true;
    try {
      const body = {};
      if (Number(maxAge.value)) body.max_age = Number(maxAge.value);
      if (Number(maxUses.value)) body.max_uses = Number(maxUses.value);
      if (temporary.checked) body.temporary = true;
      const inv = await api.createInvite(s.id, body);
      out.value = inviteLink(inv.code);
      out.dataset.code = inv.code;
      copy.disabled = false;
      out.select();
    } catch (e) {
      err.textContent = e.message; err.hidden = false;
    } finally { create.disabled = false; }
  });
  box.append(h('p', { class: 'muted', text: `Send a link to a friend to invite them to ${s.name}.` }),
    h('div', { class: 'row' }, h('label', { class: 'small' }, 'Expire after', maxAge), h('label', { class: 'small' }, 'Max uses', maxUses),
      h('label', { class: 'small' }, temporary, ' Temporary membership')),
    err, h('div', { class: 'row' }, out, copy), create);
  return box;
}

function inviteDialog() {
  openDialog({ title: `Invite friends to ${store.server ? store.server.name : ''}`, testid: 'invite-dialog', content: [inviteBox()], actions: [{ label: 'Done' }] });
}

function settingsDialog() {
  const me = store.me || {};
  const dn = field({ label: 'Display name', name: 'display_name', value: me.display_name || '', maxlength: 32 });
  const av = field({ label: 'Avatar URL', name: 'avatar_url', value: me.avatar_url || '', type: 'url', placeholder: 'https://…' });
  const cs = field({ label: 'Custom status', name: 'custom_status', value: me.custom_status || '', maxlength: 128 });
  const profileMsg = h('p', { class: 'muted small', role: 'status', 'data-testid': 'profile-status' });
  const profile = h('form', { class: 'settings-section', 'aria-label': 'Profile', 'data-testid': 'profile-form' },
    h('h3', { text: 'My profile' }), dn.el, av.el, cs.el,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn primary', text: 'Save profile', 'data-testid': 'save-profile' }), profileMsg));
  profile.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(profile, {});
    const avatarUrl = av.input.value.trim();
    if (avatarUrl && !safeHttpUrl(avatarUrl)) { showFieldErrors(profile, { avatar_url: ['Use an http(s) URL.'] }); return; }
    profileMsg.textContent = 'Saving…';
    try {
      const u = await api.updateMe({ display_name: dn.input.value.trim() || null, avatar_url: avatarUrl || null, custom_status: cs.input.value.trim() || null });
      store.apply('USER_UPDATE', u);
      invalidate(['members', 'messages', 'userpanel', 'channels']);
      profileMsg.textContent = 'Saved.';
    } catch (err) {
      showFieldErrors(profile, err.errors || {});
      profileMsg.textContent = err.message;
    }
  });

  // Password change: the current password is required; every other session is logged out.
  const curPw = field({ label: 'Current password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const newPw = field({ label: 'New password', name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, maxlength: 128 });
  const passwordMsg = h('p', { class: 'muted small', role: 'status', 'data-testid': 'password-status' });
  const passwordForm = h('form', { class: 'settings-section', 'aria-label': 'Password', 'data-testid': 'password-form' },
    h('h3', { text: 'Password' }), curPw.el, newPw.el,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn primary', text: 'Change password', 'data-testid': 'change-password' }), passwordMsg));
  passwordForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(passwordForm, {});
    passwordMsg.textContent = 'Saving…';
    try {
      await api.updateMe({ password: curPw.input.value, new_password: newPw.input.value });
      curPw.input.value = '';
      newPw.input.value = '';
      passwordMsg.textContent = 'Password changed. Your other devices were logged out.';
      loadSessions();
    } catch (err) {
      showFieldErrors(passwordForm, err.errors || {});
      passwordMsg.textContent = err.message;
    }
  });

  const sessionsList = h('ul', { class: 'sessions', 'data-testid': 'sessions-list' });
  const loadSessions = async () => {
    clear(sessionsList).append(h('li', { class: 'muted', text: 'Loading…' }));
    try {
      const list = await api.sessions();
      clear(sessionsList);
      for (const s of list) {
        sessionsList.append(h('li', { class: 'session', 'data-testid': 'session', 'data-session-id': s.id, 'data-current': String(!!s.current) },
          h('div', {},
            h('div', { text: describeAgent(s.user_agent) }),
            h('div', { class: 'muted small', text: `${s.current ? 'This device · ' : ''}last active ${s.last_used_at ? new Date(s.last_used_at).toLocaleString() : 'unknown'} · since ${new Date(s.created_at).toLocaleDateString()}` })),
          s.current ? h('span', { class: 'badge', text: 'current' }) :
            h('button', { type: 'button', class: 'btn secondary small', text: 'Log out', 'aria-label': `Log out session ${describeAgent(s.user_agent)}`, 'data-testid': 'revoke-session', onclick: async () => {
              try { await api.deleteSession(s.id); loadSessions(); } catch (e) { toast(e.message, 'error'); }
            } })));
      }
      if (!list.length) sessionsList.append(h('li', { class: 'muted', text: 'No sessions.' }));
    } catch (e) {
      clear(sessionsList).append(h('li', { class: 'form-error', text: e.message }));
    }
  };
  loadSessions();

  openDialog({
    title: 'User settings', testid: 'settings-dialog', wide: true,
    content: [
      profile,
      passwordForm,
      h('section', { class: 'settings-section', 'aria-label': 'Sessions' }, h('h3', { text: 'Sessions' }), sessionsList),
      h('section', { class: 'settings-section', 'aria-label': 'Invite' }, h('h3', { text: 'Invite people' }), inviteBox()),
      h('section', { class: 'settings-section' },
        h('button', { type: 'button', class: 'btn danger', text: 'Log out', 'data-testid': 'logout', onclick: async () => {
          document.querySelector('dialog[open]')?.close();
          await logout();
        } })),
    ],
    actions: [{ label: 'Close' }],
  });
}

function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = /Firefox\/[\d.]+/.exec(ua)?.[0] || /Edg\/[\d.]+/.exec(ua)?.[0] || /Chrom(e|ium)\/[\d]+/.exec(ua)?.[0] || /Safari\/[\d.]+/.exec(ua)?.[0] || ua.slice(0, 40);
  const os = /Windows|Mac OS X|Android|iPhone|Linux/.exec(ua)?.[0] || '';
  return os ? `${browser} on ${os}` : browser;
}

// =====================================================================================
// Session lifecycle

async function logout() {
  if (voice) voice.leave();
  gateway.close();
  try { await api.logout(); } catch { /* tokens are cleared anyway */ }
  logoutLocal();
}

function logoutLocal(message = '') {
  if (voice && voice.channelId) voice.leave();
  gateway.close();
  store.reset();
  showAuth('login', message);
}

function closeSidebarOnMobile() { if (ui) ui.shell.classList.remove('show-sidebar'); syncDrawerButtons(); }

// Drawers: below 680 px the rail and channel list slide in from the left; below 1000 px the member
// list slides in from the right. On a wide window the member button shows or hides the column.
const narrow = () => window.matchMedia('(max-width: 1000px)').matches;
function toggleDrawer(which) {
  const sh = ui.shell.classList;
  if (which === 'members' && !narrow()) { sh.toggle('hide-members'); syncDrawerButtons(); return; }
  const cls = which === 'members' ? 'show-members' : 'show-sidebar';
  const open = !sh.contains(cls);
  sh.remove('show-members', 'show-sidebar');
  if (open) sh.add(cls);
  syncDrawerButtons();
  if (open) {
    const target = which === 'members' ? ui.members : ui.channelList;
    const first = target.querySelector('[aria-current="page"], button, [tabindex="0"]');
    if (first) first.focus();
  }
}
function closeDrawers() {
  if (!ui) return;
  ui.shell.classList.remove('show-members', 'show-sidebar');
  syncDrawerButtons();
}
function syncDrawerButtons() {
  if (!ui) return;
  const sh = ui.shell.classList;
  ui.chatHeader.querySelector('.menu-btn')?.setAttribute('aria-expanded', String(sh.contains('show-sidebar')));
  const membersShown = narrow() ? sh.contains('show-members') : !sh.contains('hide-members');
  ui.chatHeader.querySelector('.members-btn')?.setAttribute('aria-pressed', String(membersShown));
}

api.onAuthLost = () => { if (ui) logoutLocal('Your session expired. Please log in again.'); };

window.addEventListener('beforeunload', () => {
  // An explicit leave: the SFU would otherwise notice only at ICE timeout. The channel stays
  // remembered (sessionStorage, this tab only) so the reloaded page can offer to rejoin it.
  unloading = true;
  if (voice && voice.channelId) voice.leave();
});

// =====================================================================================
// Reload while in voice: offer to rejoin (a click, so the browser lets the audio play).

const VOICE_KEY = 'confab.voice';
let unloading = false;
let rejoinOffered = false;

function rememberVoiceChannel() {
  if (unloading || !voice) return;
  try {
    if (voice.channelId) sessionStorage.setItem(VOICE_KEY, JSON.stringify({ server_id: voice.serverId, channel_id: voice.channelId }));
    // Left on purpose (not by the reload): forget it, unless the offer is still on screen.
    else if (rejoinOffered && ui && ui.rejoin.hidden) sessionStorage.removeItem(VOICE_KEY);
  } catch { /* storage unavailable: nothing to offer later */ }
  if (voice.channelId && ui) hideRejoin();
}

function offerVoiceRejoin() {
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
