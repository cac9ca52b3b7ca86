// Client state: what the gateway and REST told us, plus UI selections. Mutated only through
// the methods here; `emit(topic)` tells the UI which part to re-render.

import { HOME, initInbox, resetInbox, applyInbox, inboxUser, noteMessage } from './inbox.js';

export function cmpId(a, b) {
  a = String(a); b = String(b);
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export function sortChannels(list) {
  return [...list].sort((a, b) => (a.position ?? 0) - (b.position ?? 0) || cmpId(a.id, b.id));
}

const LAST_KEY = 'confab.last';

// Permission bits (docs/permissions.md). BigInt: MODERATE_MEMBERS is bit 40.
export const PERMISSIONS = [
  ['CREATE_INVITE', 0, 'Create invites'],
  ['KICK_MEMBERS', 1, 'Kick members'],
  ['BAN_MEMBERS', 2, 'Ban members'],
  ['ADMINISTRATOR', 3, 'Administrator'],
  ['MANAGE_CHANNELS', 4, 'Manage channels'],
  ['MANAGE_SERVER', 5, 'Manage server'],
  ['ADD_REACTIONS', 6, 'Add reactions'],
  ['VIEW_AUDIT_LOG', 7, 'View audit log'],
  ['PRIORITY_SPEAKER', 8, 'Priority speaker'],
  ['VIDEO', 9, 'Video'],
  ['VIEW_CHANNEL', 10, 'View channel'],
  ['SEND_MESSAGES', 11, 'Send messages'],
  ['MANAGE_MESSAGES', 13, 'Manage messages'],
  ['EMBED_LINKS', 14, 'Embed links'],
  ['ATTACH_FILES', 15, 'Attach files'],
  ['READ_MESSAGE_HISTORY', 16, 'Read message history'],
  ['MENTION_EVERYONE', 17, 'Mention @everyone'],
  ['CONNECT', 20, 'Connect (voice)'],
  ['SPEAK', 21, 'Speak (voice)'],
  ['MUTE_MEMBERS', 22, 'Mute members'],
  ['DEAFEN_MEMBERS', 23, 'Deafen members'],
  ['MOVE_MEMBERS', 24, 'Move members'],
  ['CHANGE_NICKNAME', 26, 'Change nickname'],
  ['MANAGE_NICKNAMES', 27, 'Manage nicknames'],
  ['MANAGE_ROLES', 28, 'Manage roles'],
  ['MANAGE_WEBHOOKS', 29, 'Manage webhooks'],
  ['MANAGE_EXPRESSIONS', 30, 'Manage emoji and stickers'],
  ['MANAGE_THREADS', 34, 'Manage threads'],
  ['CREATE_PUBLIC_THREADS', 35, 'Create public threads'],
  ['CREATE_PRIVATE_THREADS', 36, 'Create private threads'],
  ['SEND_MESSAGES_IN_THREADS', 38, 'Send messages in threads'],
  ['MODERATE_MEMBERS', 40, 'Time out members'],
  ['USE_SOUNDBOARD', 42, 'Use soundboard'],
].map(([name, bit, label]) => ({ name, bit, label, value: 1n << BigInt(bit) }));
export const PERM = Object.fromEntries(PERMISSIONS.map((p) => [p.name, p.value]));
const ALL_PERMS = PERMISSIONS.reduce((a, p) => a | p.value, 0n);

/** Parse a decimal permission string (or number) to BigInt; bad input is 0. */
export function perms(v) {
  try { return BigInt(v == null || v === '' ? 0 : v); } catch { return 0n; }
}

/** A role's colour (an integer) as #rrggbb, or null for "no colour" (0). */
export function roleColor(role) {
  const c = role && Number(role.color);
  if (!Number.isInteger(c) || c <= 0 || c > 0xffffff) return null;
  return `#${c.toString(16).padStart(6, '0')}`;
}

export class Store {
  constructor() {
    this.me = null;
    this.servers = new Map();        // id -> {id, name, owner_id, created_at, channels: Map, members: Map}
    this.presences = new Map();      // user_id -> status
    this.voiceStates = new Map();    // user_id -> voice state
    this.messages = new Map();       // channel_id -> {list, loaded, hasMore, loading, stale}
    this.typing = new Map();         // channel_id -> Map(user_id -> expiresAt)
    this.reactions = new Map();      // message_id -> Map(emoji -> Set(user_id)), as seen live
    this.pinsVersion = new Map();    // channel_id -> counter bumped on CHANNEL_PINS_UPDATE
    this.currentServerId = null;
    this.currentChannelId = null;
    this.editing = null;             // {id, draft}
    this.readyCount = 0;
    let last = {};
    try { last = JSON.parse(localStorage.getItem(LAST_KEY)) || {}; } catch { /* ignore */ }
    this.lastServerId = last.serverId || null;
    this.lastChannels = last.channels || {};  // server_id -> channel_id
    this._listeners = new Set();
    initInbox(this);  // DMs, friends, read states (inbox.js)
  }

  subscribe(fn) { this._listeners.add(fn); return () => this._listeners.delete(fn); }
  emit(...topics) { for (const fn of this._listeners) fn(new Set(topics)); }

  _saveLast() {
    try {
      localStorage.setItem(LAST_KEY, JSON.stringify({ serverId: this.currentServerId, channels: this.lastChannels }));
    } catch { /* ignore */ }
  }

  reset() {
    this.me = null;
    this.servers.clear();
    this.presences.clear();
    this.voiceStates.clear();
    this.messages.clear();
    this.typing.clear();
    this.reactions.clear();
    this.pinsVersion.clear();
    this.currentServerId = null;
    this.currentChannelId = null;
    this.editing = null;
    this.readyCount = 0;
    resetInbox(this);
  }

  // ------------------------------------------------------------------ servers & channels

  upsertServer(s) {
    const prev = this.servers.get(s.id);
    const server = {
      id: s.id, name: s.name, owner_id: s.owner_id, created_at: s.created_at,
      icon_url: s.icon_url !== undefined ? s.icon_url : (prev ? prev.icon_url : null),
      channels: prev ? prev.channels : new Map(),
      members: prev ? prev.members : new Map(),
      roles: prev ? prev.roles : new Map(),      // id -> role (loaded lazily, kept live by ROLE_*)
      rolesLoaded: prev ? prev.rolesLoaded : false,
      // A large server's READY carries only some members; the rest are fetched on opening it.
      large: typeof s.large === 'boolean' ? s.large : !!(prev && prev.large),
      member_count: typeof s.member_count === 'number' ? s.member_count : prev ? prev.member_count : null,
      membersLoaded: prev ? prev.membersLoaded : true,
      // Custom emoji and stickers (docs/emoji.md), kept whole by SERVER_*_UPDATE.
      emojis: Array.isArray(s.emojis) ? s.emojis : prev ? prev.emojis : [],
      stickers: Array.isArray(s.stickers) ? s.stickers : prev ? prev.stickers : [],
    };
    if (Array.isArray(s.channels)) {
      server.channels = new Map();
      for (const c of s.channels) server.channels.set(c.id, c);
    }
    if (Array.isArray(s.members)) {
      server.membersLoaded = !server.large;
      const old = server.members;
      server.members = new Map();
      for (const m of s.members) {
        if (!m || !m.user) continue;
        // member objects carry no roles; keep the ones learnt from MEMBER_UPDATE
        const was = prev && old.get(m.user.id);
        server.members.set(m.user.id, was && was.roles && !m.roles ? { ...m, roles: was.roles } : m);
      }
    }
    if (Array.isArray(s.roles)) this.setRoles(server, s.roles);
    this.servers.set(s.id, server);
    return server;
  }

  get server() { return this.servers.get(this.currentServerId) || null; }
  get channel() {
    if (this.currentServerId === HOME) return this.privateChannels.get(this.currentChannelId) || null;
    const s = this.server;
    return (s && s.channels.get(this.currentChannelId)) || null;
  }

  get home() { return this.currentServerId === HOME; }

  findChannel(id) {
    for (const s of this.servers.values()) { const c = s.channels.get(id); if (c) return c; }
    return this.privateChannels.get(id) || null;
  }

  isOwner(serverId = this.currentServerId) {
    const s = this.servers.get(serverId);
    return !!(s && this.me && s.owner_id === this.me.id);
  }

  selectServer(id) {
    if (id === HOME) {
      // The DMs and friends home: the last DM viewed, else the friends page (no channel).
      this.currentServerId = HOME;
      this.editing = null;
      const remembered = this.lastChannels[HOME];
      this.currentChannelId = remembered && this.privateChannels.has(remembered) ? remembered : null;
      this._saveLast();
      return;
    }
    if (!this.servers.has(id)) id = this.servers.keys().next().value || null;
    this.currentServerId = id;
    this.editing = null;
    const s = this.server;
    let ch = null;
    if (s) {
      const remembered = this.lastChannels[s.id];
      const c = remembered && s.channels.get(remembered);
      if (c && c.type === 'text') ch = c.id;
      else ch = this.firstTextChannel(s)?.id || null;
    }
    this.currentChannelId = ch;
    this._saveLast();
  }

  selectChannel(id) {
    this.currentChannelId = id;
    this.editing = null;
    if (this.currentServerId) this.lastChannels[this.currentServerId] = id;
    this._saveLast();
  }

  firstTextChannel(s) {
    return sortChannels([...s.channels.values()].filter((c) => c.type === 'text'))[0] || null;
  }

  member(serverId, userId) {
    const s = this.servers.get(serverId);
    return (s && s.members.get(userId)) || null;
  }

  displayName(userId, fallbackUser, serverId = this.currentServerId) {
    const m = this.member(serverId, userId);
    const u = (m && m.user) || fallbackUser || this.userById(userId);
    if (m && m.nickname) return m.nickname;
    if (u) return u.display_name || u.username || 'unknown';
    return 'unknown';
  }

  userById(userId) {
    if (this.me && this.me.id === userId) return this.me;
    for (const s of this.servers.values()) { const m = s.members.get(userId); if (m) return m.user; }
    return inboxUser(this, userId);
  }

  // ------------------------------------------------------------------ roles & permissions

  setRoles(server, list) {
    server.roles = new Map();
    for (const r of list) server.roles.set(r.id, r);
    server.rolesLoaded = true;
  }

  /** Roles lowest first (@everyone, whose id is the server id, first). */
  sortedRoles(serverId = this.currentServerId) {
    const s = this.servers.get(serverId);
    if (!s) return [];
    return [...s.roles.values()].sort((a, b) => (a.position ?? 0) - (b.position ?? 0) || cmpId(a.id, b.id));
  }

  memberRoles(serverId, userId) {
    const s = this.servers.get(serverId);
    const m = s && s.members.get(userId);
    if (!s || !m || !Array.isArray(m.roles)) return [];
    return m.roles.map((id) => s.roles.get(id)).filter(Boolean)
      .sort((a, b) => (b.position ?? 0) - (a.position ?? 0) || cmpId(a.id, b.id));
  }

  /** The colour shown for a member: highest hoisted coloured role, else highest coloured role. */
  memberColor(serverId, userId) {
    const roles = this.memberRoles(serverId, userId).filter((r) => roleColor(r));
    const r = roles.find((x) => x.hoist) || roles[0];
    return r ? { color: roleColor(r), role: r } : null;
  }

  /**
   * My server-level permissions as far as this client knows (@everyone plus roles seen
   * assigned to me). The server is the authority; this only decides which controls to show.
   */
  myPermissions(serverId = this.currentServerId) {
    const s = this.servers.get(serverId);
    if (!s || !this.me) return 0n;
    if (s.owner_id === this.me.id) return ALL_PERMS;
    let p = perms(s.roles.get(s.id)?.permissions);
    for (const r of this.memberRoles(serverId, this.me.id)) p |= perms(r.permissions);
    return (p & PERM.ADMINISTRATOR) ? ALL_PERMS : p;
  }

  can(perm, serverId = this.currentServerId) { return (this.myPermissions(serverId) & perm) !== 0n; }

  // ------------------------------------------------------------------ reactions

  reactionsOf(messageId) { return this.reactions.get(messageId) || null; }

  setReaction(messageId, emoji, userId, on) {
    let byEmoji = this.reactions.get(messageId);
    if (!byEmoji) { if (!on) return; byEmoji = new Map(); this.reactions.set(messageId, byEmoji); }
    let users = byEmoji.get(emoji);
    if (!users) { if (!on) return; users = new Set(); byEmoji.set(emoji, users); }
    if (on) users.add(userId); else users.delete(userId);
    if (!users.size) byEmoji.delete(emoji);
    if (!byEmoji.size) this.reactions.delete(messageId);
  }

  setReactors(messageId, emoji, userIds) {
    let byEmoji = this.reactions.get(messageId);
    if (!byEmoji) { byEmoji = new Map(); this.reactions.set(messageId, byEmoji); }
    if (userIds.length) byEmoji.set(emoji, new Set(userIds)); else byEmoji.delete(emoji);
    if (!byEmoji.size) this.reactions.delete(messageId);
  }

  // ------------------------------------------------------------------ messages

  msgState(channelId) {
    let st = this.messages.get(channelId);
    if (!st) {
      st = { list: [], loaded: false, hasMore: true, loading: false, stale: false };
      this.messages.set(channelId, st);
    }
    return st;
  }

  /** Insert or replace a message (matching by id, or by nonce for our pending sends). */
  putMessage(m) {
    const st = this.msgState(m.channel_id);
    const list = st.list;
    let idx = list.findIndex((x) => x.id === m.id);
    if (idx === -1 && m.nonce) idx = list.findIndex((x) => x.pending && x.nonce === m.nonce);
    if (idx !== -1) {
      list[idx] = { ...m, pending: false };
      // a pending message may need to move to its sorted place
      list.sort((a, b) => (a.pending ? 1 : 0) - (b.pending ? 1 : 0) || (a.pending || b.pending ? 0 : cmpId(a.id, b.id)));
      return;
    }
    if (!st.loaded) return;  // history not loaded yet; it will include this
    // Showing an older stretch (a search result's context): the present is loaded again when
    // the reader goes back to it.
    if (st.detached) return;
    // insert sorted (usually at the end, before pending ones)
    let i = list.length;
    while (i > 0 && (list[i - 1].pending || cmpId(list[i - 1].id, m.id) > 0)) i--;
    list.splice(i, 0, { ...m, pending: false });
  }

  removeMessage(channelId, id) {
    const st = this.messages.get(channelId);
    if (!st) return;
    const i = st.list.findIndex((x) => x.id === id);
    if (i !== -1) st.list.splice(i, 1);
    if (this.editing && this.editing.id === id) this.editing = null;
  }

  /** Whether the user can see the selected channel now (the tab is visible). */
  viewing() { return typeof document === 'undefined' || document.visibilityState !== 'hidden'; }

  // ------------------------------------------------------------------ typing

  setTyping(channelId, userId, ms = 10000) {
    if (!this.typing.has(channelId)) this.typing.set(channelId, new Map());
    this.typing.get(channelId).set(userId, Date.now() + ms);
  }
  clearTyping(channelId, userId) {
    const t = this.typing.get(channelId);
    if (t) t.delete(userId);
  }
  typers(channelId) {
    const t = this.typing.get(channelId);
    if (!t) return [];
    const now = Date.now();
    const out = [];
    for (const [u, exp] of t) { if (exp > now) out.push(u); else t.delete(u); }
    return out;
  }

  // ------------------------------------------------------------------ voice

  voiceStatesIn(channelId) {
    return [...this.voiceStates.values()].filter((v) => v.channel_id === channelId);
  }

  // ------------------------------------------------------------------ gateway dispatches

  /** Apply a dispatch; returns the set of UI topics that changed. */
  apply(t, d) {
    const inbox = applyInbox(this, t, d);
    if (inbox && t !== 'READY') return inbox;
    const topics = this._apply(t, d);
    return inbox ? [...topics, ...inbox] : topics;
  }

  _apply(t, d) {
    switch (t) {
      case 'READY': {
        this.readyCount += 1;
        this.me = d.user;
        this.servers.clear();
        for (const s of d.servers || []) this.upsertServer(s);
        this.presences.clear();
        for (const p of d.presences || []) this.presences.set(p.user_id, p.status);
        if (this.me) this.presences.set(this.me.id, this.presences.get(this.me.id) || 'online');
        this.voiceStates.clear();
        for (const v of d.voice_states || []) if (v.channel_id) this.voiceStates.set(v.user_id, v);
        if (this.readyCount > 1) {
          // Re-identified (the gateway session was lost, e.g. its node died): the channels we
          // hold may have missed messages. Each catches up when shown (messages.js `catchUp`):
          // what came after the newest ones we hold, merged by id.
          for (const st of this.messages.values()) if (st.loaded) st.stale = true;
        }
        const keepServer = this.currentServerId && (this.servers.has(this.currentServerId) || this.home);
        if (!keepServer) this.selectServer(this.lastServerId);
        else if (!this.channel) this.selectServer(this.currentServerId);
        return ['all'];
      }
      case 'SERVER_CREATE':
        this.upsertServer(d);
        // Discord-style: a joined server may carry its members' presences and voice states.
        for (const p of d.presences || []) this.presences.set(p.user_id, p.status);
        for (const v of d.voice_states || []) if (v.channel_id) this.voiceStates.set(v.user_id, v);
        return ['servers', 'channels', 'members'];
      case 'SERVER_UPDATE':
        if (this.servers.has(d.id)) this.upsertServer({ ...d, channels: undefined, members: undefined });
        return ['servers', 'header'];
      case 'SERVER_EMOJIS_UPDATE':
      case 'SERVER_STICKERS_UPDATE': {
        const s = this.servers.get(d.server_id);
        if (s && t === 'SERVER_EMOJIS_UPDATE') s.emojis = d.emojis || [];
        if (s && t === 'SERVER_STICKERS_UPDATE') s.stickers = d.stickers || [];
        return ['expressions', 'messages'];
      }
      case 'SERVER_DELETE': {
        this.servers.delete(d.id);
        for (const [u, v] of this.voiceStates) if (v.server_id === d.id) this.voiceStates.delete(u);
        if (this.currentServerId === d.id) this.selectServer(null);
        return ['all'];
      }
      case 'CHANNEL_CREATE':
      case 'CHANNEL_UPDATE': {
        const s = this.servers.get(d.server_id);
        if (s) s.channels.set(d.id, d);
        if (this.currentServerId === d.server_id && !this.currentChannelId && d.type === 'text') this.selectChannel(d.id);
        return ['channels', 'header'];
      }
      case 'CHANNEL_DELETE': {
        const s = this.servers.get(d.server_id);
        if (s) {
          s.channels.delete(d.id);
          // children of a deleted category float to the top level
          for (const c of s.channels.values()) if (c.parent_id === d.id) c.parent_id = null;
        }
        this.messages.delete(d.id);
        if (this.currentChannelId === d.id) {
          this.currentChannelId = s ? this.firstTextChannel(s)?.id || null : null;
          if (this.currentServerId) this.lastChannels[this.currentServerId] = this.currentChannelId;
          return ['channels', 'header', 'messages', 'typing', 'composer'];
        }
        return ['channels'];
      }
      case 'MEMBER_ADD': {
        const s = this.servers.get(d.server_id);
        if (s && d.user) {
          if (!s.members.has(d.user.id) && typeof s.member_count === 'number') s.member_count += 1;
          s.members.set(d.user.id, { server_id: d.server_id, user: d.user, joined_at: d.joined_at, nickname: d.nickname ?? null });
        }
        return ['members'];
      }
      case 'MEMBER_REMOVE': {
        const s = this.servers.get(d.server_id);
        if (s) {
          if (typeof s.member_count === 'number' && s.member_count > 0) s.member_count -= 1;
          s.members.delete(d.user_id);
        }
        return ['members'];
      }
      case 'MEMBER_UPDATE': {
        const s = this.servers.get(d.server_id);
        const userId = d.user_id || (d.user && d.user.id);
        if (!s || !userId) return [];
        const prev = s.members.get(userId);
        if (d.user) s.members.set(userId, { ...(prev || {}), ...d, roles: Array.isArray(d.roles) ? d.roles : prev && prev.roles });
        else if (prev && Array.isArray(d.roles)) s.members.set(userId, { ...prev, roles: d.roles });
        return ['members', 'messages', 'header', 'channels', 'community'];
      }
      case 'ROLE_CREATE':
      case 'ROLE_UPDATE': {
        const s = this.servers.get(d.server_id);
        if (s && d.role) s.roles.set(d.role.id, d.role);
        return ['members', 'messages', 'header', 'channels', 'community'];
      }
      case 'ROLE_DELETE': {
        const s = this.servers.get(d.server_id);
        if (s) {
          s.roles.delete(d.role_id);
          for (const m of s.members.values()) if (Array.isArray(m.roles)) m.roles = m.roles.filter((r) => r !== d.role_id);
        }
        return ['members', 'messages', 'header', 'channels', 'community'];
      }
      case 'BAN_ADD':
      case 'BAN_REMOVE':
        return ['community'];
      case 'MESSAGE_REACTION_ADD':
      case 'MESSAGE_REACTION_REMOVE':
        this.setReaction(d.message_id, d.emoji, d.user_id, t === 'MESSAGE_REACTION_ADD');
        return ['reactions'];
      case 'CHANNEL_PINS_UPDATE':
        this.pinsVersion.set(d.channel_id, (this.pinsVersion.get(d.channel_id) || 0) + 1);
        return ['pins'];
      case 'PRESENCE_UPDATE':
        this.presences.set(d.user_id, d.status);
        return ['members'];
      case 'USER_UPDATE': {
        if (this.me && d.id === this.me.id) this.me = { ...this.me, ...d };
        for (const s of this.servers.values()) {
          const m = s.members.get(d.id);
          if (m) m.user = { ...m.user, ...d };
        }
        return ['members', 'messages', 'userpanel', 'channels'];
      }
      case 'MESSAGE_CREATE':
        this.putMessage(d);
        this.clearTyping(d.channel_id, d.author && d.author.id);
        noteMessage(this, d, this.currentChannelId === d.channel_id && this.viewing());
        return ['messages', 'typing', 'channels', 'servers', 'home'];
      case 'MESSAGE_UPDATE': {
        const st = this.messages.get(d.channel_id);
        if (st) {
          const i = st.list.findIndex((x) => x.id === d.id);
          if (i !== -1) st.list[i] = { ...st.list[i], ...d, pending: false };
        }
        return ['messages'];
      }
      case 'MESSAGE_DELETE':
        this.removeMessage(d.channel_id, d.id);
        return ['messages'];
      case 'MESSAGE_DELETE_BULK':
        for (const id of d.ids || []) this.removeMessage(d.channel_id, id);
        return ['messages'];
      case 'TYPING_START':
        if (!this.me || d.user_id !== this.me.id) this.setTyping(d.channel_id, d.user_id);
        return ['typing'];
      case 'VOICE_STATE_UPDATE':
        if (d.channel_id) this.voiceStates.set(d.user_id, d);
        else this.voiceStates.delete(d.user_id);
        return ['channels', 'voice'];
      case 'VOICE_SPEAKING':
        return ['channels', 'voice'];
      case 'VOICE_STREAM_VIEWERS': {
        const v = this.voiceStates.get(d.user_id);
        if (v && v.channel_id === d.channel_id) v.stream_viewers = d.viewers | 0;
        return ['channels', 'voice'];
      }
      default:
        return [];
    }
  }
}
