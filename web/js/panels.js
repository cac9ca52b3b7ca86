// The chat header, the connection status line, the member list and the user panel.

import { store, ui, gateway } from './context.js';
import { h, add, clear, avatar, readableOn } from './dom.js';
import { icon } from './icons.js';
import { togglePins, memberDialog } from './community.js';
import { channelTitle, isPrivate } from './inbox.js';
import { renderDmMembers } from './dms.js';
import { toggleDrawer, syncDrawerButtons } from './drawers.js';
import { settingsDialog } from './dialogs.js';
import { searchBox } from './search.js';
import { threadsButton, renderForum } from './threads.js';
import { myStatus, statusDialog, STATUSES } from './notifications.js';

export function renderHeader() {
  renderHeaderInner();
  renderForum();
  syncDrawerButtons();
}

function renderHeaderInner() {
  const el = clear(ui.chatHeader);
  const c = store.channel;
  el.append(h('button', { class: 'icon-btn menu-btn', 'aria-label': 'Toggle channel list', 'aria-controls': 'sidebar', 'aria-expanded': String(ui.shell.classList.contains('show-sidebar')), 'data-testid': 'menu-button', text: '☰', onclick: () => toggleDrawer('sidebar') }));
  if (!c) { el.append(h('h2', { text: store.home ? 'Friends' : store.server ? 'No text channel' : 'Confab' })); document.title = 'Confab'; return; }
  if (isPrivate(c)) {
    el.append(h('h2', { 'data-testid': 'channel-title', text: channelTitle(store, c) }), searchBox());
    document.title = `${channelTitle(store, c)} · Confab`;
    return;
  }
  el.append(h('h2', { 'data-testid': 'channel-title' }, h('span', { class: 'muted', text: '# ' }), c.name));
  if (c.topic) el.append(h('span', { class: 'topic', text: c.topic, title: c.topic }));
  const threads = threadsButton(c);
  if (threads) el.append(threads);
  el.append(h('button', { class: 'icon-btn pins-btn', 'aria-label': 'Pinned messages', title: 'Pinned messages', 'aria-haspopup': 'dialog', 'aria-expanded': 'false', 'data-testid': 'pins-button', onclick: (e) => togglePins(c, e.currentTarget) }, icon('pin')));
  el.append(h('button', { class: 'icon-btn members-btn', 'aria-label': 'Toggle member list', 'aria-controls': 'members', title: 'Member list', 'data-testid': 'members-button', onclick: () => toggleDrawer('members') }, icon('users')));
  el.append(searchBox());
  document.title = `#${c.name} · ${store.server ? store.server.name : ''} · Confab`;
}

export function renderStatus() {
  if (!ui) return;
  const s = gateway.status;
  ui.status.hidden = s === 'ready';
  ui.status.textContent = s === 'reconnecting' ? 'Connection lost. Reconnecting… (messages you missed will follow)'
    : s === 'connecting' ? 'Connecting…'
      : s === 'disconnected' ? 'Disconnected from the server. Reload the page to connect again.' : '';
}

export function renderMembers() {
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
          m.user.bot ? h('span', { class: 'bot-tag', 'data-testid': 'bot-tag', title: 'A bot account', text: 'BOT' }) : null,
          s.owner_id === m.user.id ? h('span', { role: 'img', class: 'crown', title: 'Server owner', 'aria-label': 'Server owner' }, icon('crown', 14)) : null);
      })));
  };
  add(el, group('Online', online), group('Offline', offline),
    s.large && !s.membersLoaded ? h('p', { class: 'muted small', 'data-testid': 'members-loading', text: 'Loading members…' }) : null);
}

function statusLabel() {
  const s = myStatus();
  return (STATUSES.find(([v]) => v === s) || [s, s])[1];
}

export function renderUserPanel() {
  const el = clear(ui.userPanel);
  const me = store.me;
  if (!me) return;
  el.append(
    // Named by its hidden text, not aria-label: the avatar is decoration (aria-hidden).
    h('button', { type: 'button', class: 'avatar-wrap status-button', title: 'Set status', 'data-testid': 'status-button', 'data-status': myStatus(), onclick: statusDialog },
      avatar(me, 32), h('span', { class: `presence-dot ${myStatus() === 'invisible' ? 'offline' : myStatus()}`, 'aria-hidden': 'true' }),
      h('span', { class: 'sr-only', text: `Set status (${statusLabel()})` })),
    h('span', { class: 'me-text' },
      h('span', { class: 'me-name', 'data-testid': 'me-name', text: me.display_name || me.username }),
      h('span', { class: 'me-status', text: me.custom_status || `@${me.username}` })),
    h('button', { class: 'icon-btn', 'aria-label': 'User settings', title: 'User settings', 'data-testid': 'open-settings', onclick: settingsDialog }, icon('gear')),
  );
}
