// The server rail (home and server buttons) and the server header with its actions.

import { store, ui } from './context.js';
import { h, clear, tooltip } from './dom.js';
import { icon } from './icons.js';
import { canOpenServerSettings, serverSettingsDialog } from './community.js';
import { homeButton, serverRailBadge, renderHomeHeader } from './dms.js';
import { selectServer } from './navigation.js';
import { serverNotificationsDialog } from './notifications.js';
import { inviteDialog, createChannelDialog, renameServerDialog, deleteServerDialog, leaveServerDialog } from './dialogs.js';

export function renderServers() {
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
      }, s.icon_url
        ? h('img', { class: 'rail-icon', src: s.icon_url, alt: '', 'aria-hidden': 'true', width: 48, height: 48, 'data-testid': 'server-icon' })
        : h('span', { 'aria-hidden': 'true', text: initials }),
      h('span', { class: 'sr-only', text: s.name })), s.name), b.badge));
  }
}

export function renderServerHeader() {
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
      h('button', { class: 'icon-btn', 'aria-label': 'Notification settings', title: 'Notification settings', 'data-testid': 'server-notifications', onclick: () => serverNotificationsDialog() }, icon('bell')),
      h('button', { class: 'icon-btn', 'aria-label': 'Invite people', title: 'Invite people', 'data-testid': 'invite-people', onclick: inviteDialog }, icon('invite')),
      owner ? h('button', { class: 'icon-btn', 'aria-label': 'Create channel', title: 'Create channel', 'data-testid': 'create-channel', text: '+', onclick: () => createChannelDialog() }) : null,
      owner ? h('button', { class: 'icon-btn', 'aria-label': 'Rename server', title: 'Rename server', text: '✎', onclick: renameServerDialog }) : null,
      owner
        ? h('button', { class: 'icon-btn danger', 'aria-label': 'Delete server', title: 'Delete server', onclick: deleteServerDialog }, icon('trash'))
        : h('button', { class: 'icon-btn danger', 'aria-label': 'Leave server', title: 'Leave server', onclick: leaveServerDialog }, icon('leave')),
    ),
  );
}
