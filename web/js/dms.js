// The DMs and friends home: the rail's home button, the DM list (sidebar), the friends page
// (online / all / pending / blocked, add by username), group DM creation, and read states:
// unread markers, mention badges and acking what is on screen. DM conversations reuse the chat
// view of messages.js; state is in inbox.js.

import { h, clear, avatar, openDialog, toast } from './dom.js';
import { cmpId } from './state.js';
import {
  HOME, dmLabel, others, isUnread, mentionCount, homeBadge, serverBadge, setRead,
} from './inbox.js';

let api = null;
let store = null;
let invalidate = () => {};
let selectServer = () => {};
let selectChannel = () => {};
let friendsTab = 'online';
// The add-friend form outlives re-renders (events re-render the page while one types).
const addFriend = { draft: '', status: '' };

export function initDms(ctx) {
  ({ api, store, invalidate, selectServer, selectChannel } = ctx);
  document.addEventListener('visibilitychange', () => ackIfViewing());
}

/** A count badge ("3", "99+") or null. */
export function mentionBadge(n, label) {
  if (!n) return null;
  return h('span', { class: 'mention-badge', 'data-testid': 'mention-badge', 'aria-label': `${n} ${label}`, text: n > 99 ? '99+' : String(n) });
}

// ------------------------------------------------------------------ rail

/** The rail's home button (DMs and friends), with its unread state. */
export function homeButton() {
  const b = homeBadge(store);
  return h('li', { class: `rail-item${b.unread ? ' unread' : ''}` },
    h('button', {
      class: `rail-btn home${store.home ? ' active' : ''}`,
      'aria-label': 'Direct messages', title: 'Direct messages',
      'aria-current': store.home ? 'page' : null,
      'data-testid': 'home-button', 'data-unread': String(b.unread),
      onclick: () => selectServer(HOME),
    }, '✉'),
    mentionBadge(b.mentions, 'unread direct messages'));
}

/** Unread pill and mention badge next to a server's rail button. */
export function serverRailBadge(s) {
  const b = serverBadge(store, s);
  return { unread: b.unread, badge: mentionBadge(b.mentions, 'mentions') };
}

/** Unread state of a server channel row. */
export function channelBadge(c) {
  return { unread: isUnread(store, c), badge: mentionBadge(mentionCount(store, c), 'mentions') };
}

// ------------------------------------------------------------------ sidebar

export function renderHomeHeader(el) {
  el.append(h('h2', { text: 'Direct Messages', 'data-testid': 'server-name' }));
}

export function renderDmSidebar(el) {
  const friendsActive = store.home && !store.currentChannelId;
  el.append(h('ul', { class: 'channels' },
    h('li', { class: `channel${friendsActive ? ' active' : ''}` },
      h('div', { class: 'channel-row' },
        h('button', { class: 'channel-link', 'data-testid': 'friends-link', 'aria-current': friendsActive ? 'page' : null,
          onclick: () => { store.selectChannel(null); store.lastChannels[HOME] = null; invalidate(['all']); } },
        h('span', { class: 'chan-icon', 'aria-hidden': 'true', text: '☺' }), h('span', { class: 'chan-name', text: 'Friends' }))))));
  el.append(h('header', { class: 'category-head' },
    h('h3', { text: 'DIRECT MESSAGES' }),
    h('span', { class: 'row-actions always' },
      h('button', { class: 'icon-btn tiny', 'aria-label': 'Create group DM', title: 'Create group DM', 'data-testid': 'new-group-dm', text: '+', onclick: groupDmDialog }))));
  const list = [...store.privateChannels.values()]
    .sort((a, b) => cmpId(b.last_message_id || b.id, a.last_message_id || a.id));
  const ul = h('ul', { class: 'channels dm-list', 'data-testid': 'dm-list' });
  for (const c of list) {
    const active = c.id === store.currentChannelId;
    const unread = isUnread(store, c);
    const first = others(store, c)[0];
    const label = dmLabel(store, c);
    ul.append(h('li', { class: `channel dm${active ? ' active' : ''}${unread ? ' unread' : ''}` },
      h('div', { class: 'channel-row' },
        h('button', {
          class: 'channel-link', 'data-testid': 'dm-link', 'data-channel-id': c.id, 'data-unread': String(unread),
          'aria-current': active ? 'page' : null,
          onclick: () => selectChannel(c.id),
        },
        // Named by its text (the avatar is hidden from screen readers), so what is seen is what is said.
        c.type === 'dm' && first ? avatar(first, 24) : h('span', { class: 'chan-icon', 'aria-hidden': 'true', text: '👥' }),
        h('span', { class: 'sr-only', text: c.type === 'group_dm' ? 'Group ' : 'Direct message with ' }),
        h('span', { class: 'chan-name', text: label }),
        unread ? h('span', { class: 'sr-only', text: ' (unread)' }) : null),
        mentionBadge(mentionCount(store, c), 'mentions'))));
  }
  if (!list.length) ul.append(h('li', { class: 'muted pad small', text: 'No conversations yet. Message a friend to start one.' }));
  el.append(ul);
}

/** The people of the DM on screen (member list column). */
export function renderDmMembers(el) {
  const c = store.channel;
  if (!c || !c.recipients) return;
  el.append(h('section', { class: 'member-group' },
    h('h3', { text: `Members — ${c.recipients.length}` }),
    h('ul', {}, c.recipients.map((u) => {
      const st = presence(u.id);
      return h('li', { class: `member ${st}`, 'data-testid': 'member', 'data-user-id': u.id, 'data-status': st },
        h('span', { class: 'avatar-wrap' }, avatar(u, 32), h('span', { role: 'img', class: `presence-dot ${st}`, 'aria-label': st })),
        h('span', { class: 'member-text' }, h('span', { class: 'member-name', text: u.display_name || u.username })),
        c.owner_id === u.id ? h('span', { class: 'muted small', text: 'owner' }) : null);
    }))));
}

function presence(userId) {
  const st = store.presences.get(userId) || 'offline';
  return st === 'invisible' ? 'offline' : st;
}

// ------------------------------------------------------------------ friends page

export function renderFriendsPage(el) {
  clear(el);
  const rels = [...store.relationships.values()];
  const by = (type) => rels.filter((r) => r.type === type);
  const friends = by('friend');
  const pending = rels.filter((r) => r.type === 'incoming' || r.type === 'outgoing');
  const tabs = [
    ['online', 'Online', friends.filter((r) => presence(r.id) !== 'offline')],
    ['all', 'All', friends],
    ['pending', `Pending${pending.length ? ` (${pending.length})` : ''}`, pending],
    ['blocked', 'Blocked', by('blocked')],
    ['add', 'Add friend', null],
  ];
  el.append(h('div', { class: 'friends-tabs', role: 'tablist', 'aria-label': 'Friends' },
    tabs.map(([id, label]) => h('button', {
      role: 'tab', class: `tab${friendsTab === id ? ' active' : ''}${id === 'add' ? ' add' : ''}`,
      'aria-selected': String(friendsTab === id), 'data-testid': `friends-tab-${id}`,
      onclick: () => { friendsTab = id; renderFriendsPage(el); },
    }, label))));
  if (friendsTab === 'add') { el.append(addFriendForm()); return; }
  const list = tabs.find(([id]) => id === friendsTab)[2];
  const ul = h('ul', { class: 'friend-list', 'data-testid': 'friend-list', 'aria-label': 'People' });
  for (const r of list.sort((a, b) => name(a.user).localeCompare(name(b.user)))) ul.append(friendRow(r));
  if (!list.length) {
    ul.append(h('li', { class: 'muted pad', text: {
      online: 'No friends online right now.', all: 'No friends yet. Add one by username.',
      pending: 'No pending requests.', blocked: 'Nobody blocked.' }[friendsTab] }));
  }
  el.append(ul);
}

function name(u) { return ((u && (u.display_name || u.username)) || '').toLowerCase(); }

function friendRow(r) {
  const u = r.user || { id: r.id };
  const st = presence(r.id);
  const act = (label, testid, fn, kind = 'secondary') => h('button', {
    type: 'button', class: `btn ${kind} small`, text: label, 'data-testid': testid,
    'aria-label': `${label} ${u.username}`,
    onclick: async (e) => {
      e.currentTarget.disabled = true;
      try { await fn(); } catch (err) { toast(err.message, 'error'); e.currentTarget.disabled = false; }
    },
  });
  const actions = [];
  if (r.type === 'friend') {
    actions.push(act('Message', 'friend-message', () => openDm(r.id), 'primary'));
    actions.push(act('Remove', 'friend-remove', () => api.del(`/users/@me/relationships/${r.id}`)));
    actions.push(act('Block', 'friend-block', () => api.put(`/users/@me/relationships/${r.id}`, { type: 'blocked' }), 'danger'));
  } else if (r.type === 'incoming') {
    actions.push(act('Accept', 'friend-accept', () => api.put(`/users/@me/relationships/${r.id}`, { type: 'friend' }), 'primary'));
    actions.push(act('Decline', 'friend-decline', () => api.del(`/users/@me/relationships/${r.id}`)));
  } else if (r.type === 'outgoing') {
    actions.push(act('Cancel', 'friend-cancel', () => api.del(`/users/@me/relationships/${r.id}`)));
  } else if (r.type === 'blocked') {
    actions.push(act('Unblock', 'friend-unblock', () => api.del(`/users/@me/relationships/${r.id}`)));
  }
  const sub = { friend: st, incoming: 'Incoming friend request', outgoing: 'Outgoing friend request', blocked: 'Blocked' }[r.type];
  return h('li', { class: 'friend', 'data-testid': 'friend', 'data-user-id': r.id, 'data-type': r.type, 'data-status': st },
    h('span', { class: 'avatar-wrap' }, avatar(u, 32), r.type === 'friend' ? h('span', { role: 'img', class: `presence-dot ${st}`, 'aria-label': st }) : null),
    h('span', { class: 'member-text' },
      h('span', { class: 'member-name', text: u.display_name || u.username }),
      h('span', { class: 'member-status', text: sub })),
    h('span', { class: 'friend-actions' }, actions));
}

function addFriendForm() {
  const input = h('input', { type: 'text', name: 'username', maxlength: 32, 'aria-label': 'Username', 'data-testid': 'add-friend-input', placeholder: 'Enter a username' });
  input.value = addFriend.draft;
  input.addEventListener('input', () => { addFriend.draft = input.value; });
  const msg = h('p', { class: 'small', role: 'status', 'data-testid': 'add-friend-status', text: addFriend.status });
  const say = (text) => { addFriend.status = text; msg.textContent = text; };
  const form = h('form', { class: 'add-friend', 'aria-label': 'Add friend' },
    h('h3', { text: 'Add friend' }),
    h('p', { class: 'muted small', text: 'You can add friends with their username.' }),
    h('div', { class: 'row' }, input, h('button', { type: 'submit', class: 'btn primary', text: 'Send friend request', 'data-testid': 'add-friend-submit' })),
    msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = input.value.trim();
    if (!username) { say('Enter a username.'); return; }
    try {
      await api.post('/users/@me/relationships', { username });
      addFriend.draft = '';
      say(`Friend request sent to ${username}.`);
      // The page may have been re-rendered meanwhile: update what is on screen.
      const live = document.querySelector('[data-testid="add-friend-input"]');
      if (live) live.value = '';
    } catch (err) {
      say(err.status === 404 ? `Nobody is called ${username}.` : err.message);
    }
    const shown = document.querySelector('[data-testid="add-friend-status"]');
    if (shown) shown.textContent = addFriend.status;
  });
  queueMicrotask(() => input.focus());
  return form;
}

// ------------------------------------------------------------------ DMs

/** Opens (or creates) the DM with a user and shows it. */
export async function openDm(userId) {
  const c = await api.post('/users/@me/channels', { recipient_id: userId });
  store.privateChannels.set(c.id, { ...(store.privateChannels.get(c.id) || {}), ...c });
  showDm(c.id);
}

function showDm(id) {
  if (!store.home) selectServer(HOME);
  selectChannel(id);
}

function groupDmDialog() {
  const friends = [...store.relationships.values()].filter((r) => r.type === 'friend');
  const boxes = friends.map((r) => {
    const cb = h('input', { type: 'checkbox', value: r.id, 'aria-label': `Add ${r.user.username}` });
    return { cb, el: h('label', { class: 'check-row' }, cb, avatar(r.user, 24), h('span', { text: r.user.display_name || r.user.username })) };
  });
  const groupName = h('input', { type: 'text', maxlength: 100, 'aria-label': 'Group name (optional)', placeholder: 'Group name (optional)', 'data-testid': 'group-name' });
  openDialog({
    title: 'New group DM', testid: 'group-dm-dialog',
    content: friends.length
      ? [h('p', { class: 'muted small', text: 'Pick up to 9 friends.' }), groupName, h('div', { class: 'check-list' }, boxes.map((b) => b.el))]
      : [h('p', { class: 'muted', text: 'Add friends first: group DMs are made from your friends.' })],
    actions: [{ label: 'Cancel' }, { label: 'Create group DM', submit: true, onClick: async () => {
      const ids = boxes.filter((b) => b.cb.checked).map((b) => b.cb.value);
      if (!ids.length) throw new Error('Pick at least one friend.');
      if (ids.length > 9) throw new Error('A group DM has at most 10 people, you included.');
      const c = await api.post('/users/@me/channels', { recipient_ids: ids, name: groupName.value.trim() || undefined });
      store.privateChannels.set(c.id, c);
      showDm(c.id);
    } }],
  });
}

// ------------------------------------------------------------------ read states

const acking = new Set();

/** Acks the channel on screen when it has unread messages and the tab is visible. */
export async function ackIfViewing() {
  const c = store.channel;
  if (!c || !c.last_message_id || !store.viewing() || acking.has(c.id)) return;
  if (!isUnread(store, c) && !mentionCount(store, c)) return;
  const last = c.last_message_id;
  acking.add(c.id);
  // Shown as read at once; the server's answer (and MESSAGE_ACK) confirm it.
  setRead(store, c.id, last, 0);
  invalidate(['channels', 'servers', 'home']);
  try {
    const rs = await api.post(`/channels/${c.id}/messages/${last}/ack`);
    if (rs && rs.channel_id) store.readStates.set(rs.channel_id, rs);
  } catch { /* stays read locally; READY brings the truth next time */ }
  acking.delete(c.id);
  if (store.channel && store.channel.id === c.id && c.last_message_id !== last) ackIfViewing();
}
