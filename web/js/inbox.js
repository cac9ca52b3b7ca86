// Inbox state: DMs and group DMs, friends (relationships) and read states (unread markers and
// mention badges). Pure functions over the Store; the UI lives in dms.js.

import { cmpId } from './state.js';

/** `currentServerId` while the DMs and friends home is shown. */
export const HOME = '@me';

export function initInbox(store) {
  store.privateChannels = new Map();  // channel_id -> DM / group DM channel (with recipients)
  store.relationships = new Map();    // user_id -> {id, type, user}
  store.readStates = new Map();       // channel_id -> {last_message_id, mention_count}
}

export function resetInbox(store) {
  store.privateChannels.clear();
  store.relationships.clear();
  store.readStates.clear();
}

/** Someone in a DM or a relationship, by id. */
export function inboxUser(store, userId) {
  const r = store.relationships.get(userId);
  if (r && r.user) return r.user;
  for (const c of store.privateChannels.values()) {
    const u = (c.recipients || []).find((x) => x.id === userId);
    if (u) return u;
  }
  return null;
}

/** The other people of a DM (everyone but me). */
export function others(store, c) {
  const me = store.me && store.me.id;
  return (c.recipients || []).filter((u) => u.id !== me);
}

/** What a DM is called: the group's name, else its other people's names. */
export function dmLabel(store, c) {
  if (c.name) return c.name;
  const names = others(store, c).map((u) => u.display_name || u.username);
  return names.join(', ') || 'Just you';
}

/** How a channel is titled: "#general", "@alice" or a group DM's name. */
export function channelTitle(store, c) {
  if (!c) return '';
  if (c.type === 'dm') return `@${dmLabel(store, c)}`;
  if (c.type === 'group_dm') return dmLabel(store, c);
  return `#${c.name}`;
}

export function isPrivate(c) { return !!c && (c.type === 'dm' || c.type === 'group_dm'); }

// ------------------------------------------------------------------ read states

export function isUnread(store, c) {
  if (!c || !c.last_message_id) return false;
  const rs = store.readStates.get(c.id);
  return !rs || !rs.last_message_id || cmpId(c.last_message_id, rs.last_message_id) > 0;
}

export function mentionCount(store, c) {
  const rs = c && store.readStates.get(c.id);
  return (rs && rs.mention_count) || 0;
}

/** A server's unread flag and mention total over its text channels. */
export function serverBadge(store, s) {
  let unread = false;
  let mentions = 0;
  for (const c of s.channels.values()) {
    if (c.type !== 'text') continue;
    if (isUnread(store, c)) unread = true;
    mentions += mentionCount(store, c);
  }
  return { unread, mentions };
}

/** The home button's badge: mentions in DMs, plus each unread DM at least once. */
export function homeBadge(store) {
  let unread = false;
  let mentions = 0;
  for (const c of store.privateChannels.values()) {
    if (!isUnread(store, c)) continue;
    unread = true;
    mentions += Math.max(1, mentionCount(store, c));
  }
  return { unread, mentions };
}

/** Whether a new message mentions me: directly, @everyone, or one of my roles there. */
export function mentionsMe(store, m) {
  const me = store.me && store.me.id;
  if (!me || !m || (m.author && m.author.id === me)) return false;
  if (m.mention_everyone) return true;
  if ((m.mentions || []).includes(me)) return true;
  const member = m.server_id ? store.member(m.server_id, me) : null;
  const mine = new Set((member && member.roles) || []);
  return (m.mention_roles || []).some((r) => mine.has(r));
}

export function setRead(store, channelId, lastMessageId, mentionCountValue = 0) {
  store.readStates.set(channelId, { channel_id: channelId, last_message_id: lastMessageId, mention_count: mentionCountValue });
}

// ------------------------------------------------------------------ dispatches

/** Applies an inbox dispatch; returns the UI topics it changed (or null if not one of ours). */
export function applyInbox(store, t, d) {
  switch (t) {
    case 'READY':
      resetInbox(store);
      for (const c of d.private_channels || []) store.privateChannels.set(c.id, c);
      for (const r of d.relationships || []) store.relationships.set(r.id, r);
      for (const rs of d.read_states || []) store.readStates.set(rs.channel_id, rs);
      return ['home'];
    case 'CHANNEL_CREATE':
    case 'CHANNEL_UPDATE':
      if (d.server_id) return null;
      store.privateChannels.set(d.id, { ...(store.privateChannels.get(d.id) || {}), ...d });
      return ['home', 'channels', 'servers'];
    case 'CHANNEL_DELETE':
      if (!store.privateChannels.has(d.id)) return null;
      store.privateChannels.delete(d.id);
      store.messages.delete(d.id);
      if (store.currentChannelId === d.id) store.currentChannelId = null;
      return ['home', 'channels', 'servers', 'header', 'messages', 'composer'];
    case 'CHANNEL_RECIPIENT_ADD':
    case 'CHANNEL_RECIPIENT_REMOVE': {
      const c = store.privateChannels.get(d.channel_id);
      if (!c || !d.user) return [];
      const list = (c.recipients || []).filter((u) => u.id !== d.user.id);
      if (t === 'CHANNEL_RECIPIENT_ADD') list.push(d.user);
      c.recipients = list;
      if (d.owner_id !== undefined) c.owner_id = d.owner_id;
      return ['home', 'channels', 'header', 'members'];
    }
    case 'RELATIONSHIP_ADD':
      store.relationships.set(d.id, d);
      return ['home', 'servers'];
    case 'RELATIONSHIP_REMOVE':
      store.relationships.delete(d.id);
      return ['home', 'servers'];
    case 'MESSAGE_ACK':
      store.readStates.set(d.channel_id, d);
      return ['channels', 'servers', 'home'];
    default:
      return null;
  }
}

/** Bookkeeping for a new message: the channel's newest id, and my mention count. */
export function noteMessage(store, m, viewing) {
  const c = store.findChannel(m.channel_id);
  if (!c) return;
  if (!c.last_message_id || cmpId(m.id, c.last_message_id) > 0) c.last_message_id = m.id;
  const mine = store.me && m.author && m.author.id === store.me.id;
  if (mine) {
    // What I wrote I have read.
    const rs = store.readStates.get(m.channel_id);
    setRead(store, m.channel_id, m.id, viewing ? 0 : (rs && rs.mention_count) || 0);
  } else if (!viewing && mentionsMe(store, m)) {
    const rs = store.readStates.get(m.channel_id) || { channel_id: m.channel_id, last_message_id: null, mention_count: 0 };
    store.readStates.set(m.channel_id, { ...rs, mention_count: (rs.mention_count || 0) + 1 });
  }
}
