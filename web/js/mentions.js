// Mentions in the composer and in messages.
//
// - `attachMentionAutocomplete(textarea)`: typing `@` lists the members (and the roles one may
//   ping, and @everyone / @here with MENTION_EVERYONE), `#` the server's channels. ↑/↓ move,
//   Enter or Tab picks, Escape closes, a click picks. Picking inserts the token the server
//   understands: `<@USER_ID>`, `<@&ROLE_ID>`, `<#CHANNEL_ID>`, `@everyone`, `@here`.
// - `resolveMention` names those tokens for markdown.js (`@bob`, `@team`, `#general`).
// - `linkPlainMentions` turns a typed `@username` that names exactly one member into `<@id>` on
//   send, so a mention typed without the list still reaches its person.

import { h, clear, avatar, readableOn } from './dom.js';
import { PERM, roleColor, sortChannels } from './state.js';
import { isPrivate } from './inbox.js';
import { emojiCandidates } from './emoji.js';

let store = null;
const MAX_ITEMS = 10;

export function initMentions(deps) { store = deps.store; }

// ------------------------------------------------------------------ candidates

/** The people one can mention where the current channel is: server members or DM recipients. */
function people() {
  const c = store.channel;
  if (c && isPrivate(c)) return (c.recipients || []).map((u) => ({ user: u, nickname: null }));
  const s = store.server;
  return s ? [...s.members.values()].filter((m) => m && m.user) : [];
}

function mayMentionEveryone() {
  const c = store.channel;
  return !!(c && !isPrivate(c) && store.can(PERM.MENTION_EVERYONE));
}

function matches(query, ...names) {
  const q = query.toLowerCase();
  return names.some((n) => n && String(n).toLowerCase().startsWith(q));
}

function userCandidates(query) {
  const me = store.me && store.me.id;
  const list = people()
    .filter((m) => matches(query, m.user.username, m.user.display_name, m.nickname))
    .map((m) => ({
      kind: 'user', id: m.user.id, user: m.user,
      label: m.nickname || m.user.display_name || m.user.username,
      detail: m.user.username,
      token: `<@${m.user.id}>`,
    }))
    .sort((a, b) => (a.id === me) - (b.id === me) || a.label.localeCompare(b.label));
  const s = store.server;
  const c = store.channel;
  const roles = s && c && !isPrivate(c)
    ? [...s.roles.values()]
      .filter((r) => r.id !== s.id && (r.mentionable || mayMentionEveryone()) && matches(query, r.name))
      .map((r) => ({ kind: 'role', id: r.id, label: r.name, detail: 'role', color: roleColor(r) && readableOn(roleColor(r)), token: `<@&${r.id}>` }))
    : [];
  const everyone = mayMentionEveryone()
    ? [['everyone', 'Notify everyone who can see this channel'], ['here', 'Notify everyone online']]
      .filter(([w]) => w.startsWith(query.toLowerCase()))
      .map(([w, d]) => ({ kind: w, id: w, label: `@${w}`, detail: d, token: `@${w}` }))
    : [];
  return [...list, ...roles, ...everyone].slice(0, MAX_ITEMS);
}

function channelCandidates(query) {
  const s = store.server;
  const c = store.channel;
  if (!s || !c || isPrivate(c)) return [];
  return sortChannels([...s.channels.values()])
    .filter((ch) => ch.type !== 'category' && matches(query, ch.name))
    .map((ch) => ({ kind: 'channel', id: ch.id, label: ch.name, detail: ch.type === 'text' ? 'text channel' : `${ch.type} channel`, token: `<#${ch.id}>` }))
    .slice(0, MAX_ITEMS);
}

/** The `@query` or `#query` being typed just before the caret, or null. */
export function triggerAt(value, caret) {
  const before = value.slice(0, caret);
  const m = /(^|[\s(])([@#:])([^\s@#<>:]{0,32})$/.exec(before);
  if (!m) return null;
  // `:` lists the server's custom emoji once a letter follows (a lone colon is punctuation).
  if (m[2] === ':' && (m[3].length < 1 || !/^[A-Za-z0-9_]+$/.test(m[3]))) return null;
  return { char: m[2], query: m[3], start: caret - m[3].length - 1, end: caret };
}

// ------------------------------------------------------------------ the popup

let seq = 0;

/** Adds the autocomplete to a textarea. Its keydown listener runs before the textarea's own. */
export function attachMentionAutocomplete(input, { container } = {}) {
  const listId = `mention-list-${++seq}`;
  const list = h('ul', { class: 'mention-list', id: listId, role: 'listbox', 'aria-label': 'Suggestions', 'data-testid': 'mention-autocomplete', hidden: true });
  (container || input.parentElement).append(list);
  input.setAttribute('aria-autocomplete', 'list');
  let items = [];
  let active = 0;
  let trigger = null;

  const close = () => {
    list.hidden = true;
    items = [];
    trigger = null;
    input.removeAttribute('aria-activedescendant');
    input.removeAttribute('aria-controls');
  };

  const render = () => {
    clear(list);
    if (!items.length) { close(); return; }
    list.hidden = false;
    input.setAttribute('aria-controls', listId);
    list.append(h('li', { class: 'mention-head', role: 'presentation', text: trigger.char === '#' ? 'Channels' : trigger.char === ':' ? 'Emoji' : 'Members' }));
    items.forEach((it, i) => {
      const id = `${listId}-${i}`;
      const li = h('li', {
        id, role: 'option', class: `mention-item${i === active ? ' active' : ''}`, 'aria-selected': String(i === active),
        'data-testid': 'mention-option', 'data-kind': it.kind, 'data-id': it.id,
      },
      it.kind === 'user' ? avatar(it.user, 20)
        : it.kind === 'emoji' ? h('img', { class: 'custom-emoji', src: it.image, alt: '', 'aria-hidden': 'true' })
          : h('span', { class: 'mention-glyph', 'aria-hidden': 'true', text: it.kind === 'channel' ? '#' : '@' }),
      h('span', { class: 'mention-label', text: it.label, style: it.color ? { color: it.color } : null }),
      h('span', { class: 'mention-detail muted small', text: it.detail }));
      // mousedown keeps the focus in the textarea; click picks.
      li.addEventListener('mousedown', (e) => e.preventDefault());
      li.addEventListener('mousemove', () => { if (active !== i) { active = i; render(); } });
      li.addEventListener('click', () => pick(i));
      list.append(li);
    });
    input.setAttribute('aria-activedescendant', `${listId}-${active}`);
    list.querySelector('.active')?.scrollIntoView({ block: 'nearest' });
  };

  const update = () => {
    const t = triggerAt(input.value, input.selectionStart);
    if (!t || input.selectionStart !== input.selectionEnd) { close(); return; }
    const next = t.char === '#' ? channelCandidates(t.query)
      : t.char === ':' ? (store.channel && !isPrivate(store.channel) ? emojiCandidates(t.query, MAX_ITEMS) : [])
        : userCandidates(t.query);
    const same = trigger && trigger.start === t.start && trigger.char === t.char;
    trigger = t;
    items = next;
    if (!same || active >= items.length) active = 0;
    render();
  };

  const pick = (i) => {
    const it = items[i];
    if (!it || !trigger) return;
    const v = input.value;
    const insert = `${it.token} `;
    input.value = v.slice(0, trigger.start) + insert + v.slice(trigger.end);
    const caret = trigger.start + insert.length;
    input.setSelectionRange(caret, caret);
    close();
    input.focus();
    input.dispatchEvent(new Event('input', { bubbles: true }));
  };

  input.addEventListener('keydown', (e) => {
    if (list.hidden || !items.length || e.isComposing) return;
    let handled = true;
    if (e.key === 'ArrowDown') { active = (active + 1) % items.length; render(); }
    else if (e.key === 'ArrowUp') { active = (active - 1 + items.length) % items.length; render(); }
    else if ((e.key === 'Enter' && !e.shiftKey) || (e.key === 'Tab' && !e.shiftKey)) pick(active);
    else if (e.key === 'Escape') close();
    else handled = false;
    if (handled) { e.preventDefault(); e.stopImmediatePropagation(); }
  });
  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('keyup', (e) => { if (e.key === 'ArrowLeft' || e.key === 'ArrowRight' || e.key === 'Home' || e.key === 'End') update(); });
  input.addEventListener('blur', () => setTimeout(close, 0));
  return { close, get open() { return !list.hidden; } };
}

// ------------------------------------------------------------------ rendering

/** Names a mention token for markdown.js; null for an id this client does not know. */
export function resolveMention({ kind, id }) {
  if (!store) return null;
  const me = store.me && store.me.id;
  if (kind === 'everyone' || kind === 'here') return { text: `@${kind}` };
  if (kind === 'user') {
    const u = store.userById(id);
    if (!u) return null;
    return { text: `@${store.displayName(id, u)}`, me: id === me };
  }
  if (kind === 'role') {
    for (const s of store.servers.values()) {
      const r = s.roles && s.roles.get(id);
      if (r) {
        const mine = new Set((me && store.member(s.id, me)?.roles) || []);
        // Readable on the mention's own tinted background (also inside a highlighted message).
        return { text: `@${r.name}`, color: roleColor(r) && readableOn(roleColor(r), '#4a4c72', 5), me: mine.has(id) };
      }
    }
    return null;
  }
  if (kind === 'channel') {
    const c = store.findChannel(id);
    return c && !isPrivate(c) ? { text: `#${c.name}` } : null;
  }
  return null;
}

// ------------------------------------------------------------------ sending

/**
 * `@username` typed by hand (outside code) becomes `<@id>` when it names exactly one person
 * here, by username or shown name without spaces; anything else is left as typed.
 */
export function linkPlainMentions(content) {
  const list = people();
  if (!list.length) return content;
  const byName = new Map();
  const add = (name, id) => {
    if (!name || /\s/.test(name)) return;
    const k = name.toLowerCase();
    const prev = byName.get(k);
    byName.set(k, prev && prev !== id ? null : id);
  };
  for (const m of list) { add(m.user.username, m.user.id); add(m.user.display_name, m.user.id); add(m.nickname, m.user.id); }
  // Split out code spans; replace only in the text between them.
  return content.split(/(```[\s\S]*?```|`[^`\n]+`)/).map((part, i) => (i % 2 ? part
    : part.replace(/(^|[\s(])@([^\s@<>`,:;!?()]{1,32})/g, (all, pre, raw) => {
      // Usernames may hold dots: "@bob.smith" is one name, the dot in "@bob." ends a sentence.
      let name = raw;
      let rest = '';
      while (name && !byName.get(name.toLowerCase()) && /[.\-]$/.test(name)) { rest = name.slice(-1) + rest; name = name.slice(0, -1); }
      if (name === 'everyone' || name === 'here') return all;
      const id = name && byName.get(name.toLowerCase());
      return id ? `${pre}<@${id}>${rest}` : all;
    }))).join('');
}
