// The logged-in layout: builds the shell, draws it whole or by store topics, and the home / welcome panes.

import { store, ui, setUi, videoGrid } from './context.js';
import { h, clear, tooltip } from './dom.js';
import { icon } from './icons.js';
import { isVoiceChannel } from './stage.js';
import { onTopics, ensureRoles, ensureMembers, followPresences } from './community.js';
import { HOME as HOME_ID } from './inbox.js';
import { renderFriendsPage, ackIfViewing } from './dms.js';
import { selectServer, selectChannel } from './navigation.js';
import { closeDrawers, toggleDrawer } from './drawers.js';
import { renderServers, renderServerHeader } from './server-rail.js';
import { renderChannels } from './channel-list.js';
import { renderHeader, renderStatus, renderMembers, renderUserPanel } from './panels.js';
import { buildMessagesView, renderMessages, renderTyping, renderComposer, ensureMessagesLoaded } from './messages.js';
import { joinVoice, renderVoicePanel } from './voice-panel.js';
import { createServerDialog, joinServerDialog } from './dialogs.js';

export function buildShell() {
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
  const { messages, typing, composerInput, counter, composerError, composer } = buildMessagesView();
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
  setUi({ shell, serverList, serverHeader, channelList, voicePanel, userPanel, chatHeader, status, videoHost, messages, typing, composerInput, composer, counter, composerError, members, friendsPage, welcome, rejoin, voiceBar });
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

export function renderAll() {
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

/** Draws what a batch of store topics (context.js `invalidate`) touched. */
export function renderTopics(t) {
  if (!ui) return;
  if (t.has('all') || t.has('servers')) {
    // Follow first: a presence change between the REST snapshot and the follow would be lost.
    followPresences(store.currentServerId);
    ensureRoles(store.currentServerId);
    ensureMembers(store.currentServerId);
  }
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
}
