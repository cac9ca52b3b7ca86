// Message search (docs/search.md): the box in the channel header and the results panel. A
// result opens its channel at that message, in context, highlighted.

import { api, store } from './context.js';
import { h, clear } from './dom.js';
import { HOME, channelTitle } from './inbox.js';
import { selectServer, selectChannel } from './navigation.js';
import { jumpToMessage } from './messages.js';

const PAGE = 25;

// One box for the whole session: the header is redrawn often, the typed query stays.
let box = null;
let panel = null;  // { el, list, more, status, query, serverId, cursor }

/** The search form for the channel header. */
export function searchBox() {
  if (box) return box.form;
  const input = h('input', {
    type: 'search', class: 'search-input', placeholder: 'Search', maxlength: '512', autocomplete: 'off',
    'aria-label': 'Search messages', 'data-testid': 'search-input',
    title: 'Words, "a phrase", and filters: from:name in:channel has:link|file|image mentions:name before:YYYY-MM-DD after:YYYY-MM-DD pinned:true',
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { input.value = ''; closeSearch(); input.blur(); }
  });
  const form = h('form', { class: 'search-form', role: 'search', 'aria-label': 'Search messages',
    onsubmit: (e) => { e.preventDefault(); runSearch(input.value); } }, input);
  box = { form, input };
  return form;
}

export function closeSearch() {
  if (!panel) return;
  panel.el.remove();
  document.removeEventListener('keydown', panel.key, true);
  panel = null;
}

function openPanel() {
  if (panel) return panel;
  const list = h('ol', { class: 'search-results-list', 'data-testid': 'search-results-list' });
  const status = h('p', { class: 'muted pad search-status', role: 'status', 'data-testid': 'search-status' });
  const more = h('button', { type: 'button', class: 'btn secondary search-more', 'data-testid': 'search-more', hidden: true, text: 'More results',
    onclick: () => loadPage() });
  const el = h('section', { class: 'search-panel', role: 'region', 'aria-label': 'Search results', 'data-testid': 'search-results' },
    h('header', { class: 'pins-head' }, h('h3', { text: 'Search results' }),
      h('button', { type: 'button', class: 'icon-btn tiny', 'aria-label': 'Close search results', text: '✕', onclick: closeSearch })),
    status, list, more);
  const key = (e) => { if (e.key === 'Escape' && !document.querySelector('dialog[open]')) closeSearch(); };
  document.addEventListener('keydown', key, true);
  document.body.append(el);
  panel = { el, list, more, status, key, query: '', serverId: null, cursor: null };
  return panel;
}

/** Starts a search where the reader is: the current server, or their DMs at home. */
export function runSearch(query) {
  const q = query.trim();
  if (!q) { closeSearch(); return; }
  const p = openPanel();
  p.query = q;
  p.serverId = store.home ? null : store.currentServerId;
  p.cursor = null;
  clear(p.list);
  loadPage();
}

async function loadPage() {
  const p = panel;
  if (!p) return;
  const { query, serverId, cursor } = p;
  p.more.hidden = true;
  p.status.textContent = 'Searching…';
  let hits;
  try {
    hits = await api.searchMessages(serverId, query, { cursor, limit: PAGE });
  } catch (e) {
    if (panel === p && p.query === query) p.status.textContent = e.message;
    return;
  }
  // A newer search replaced this one meanwhile.
  if (panel !== p || p.query !== query || p.cursor !== cursor) return;
  for (const hit of hits) p.list.append(resultItem(hit));
  const shown = p.list.children.length;
  p.status.textContent = shown === 0 ? 'No results.' : `${shown}${hits.length === PAGE ? '+' : ''} result${shown === 1 ? '' : 's'}`;
  if (hits.length === PAGE) {
    p.cursor = hits[hits.length - 1].id;
    p.more.hidden = false;
  }
}

/** The content as text with the matched ranges marked; offsets count code points. */
function highlighted(content, ranges) {
  const chars = Array.from(content || '');
  const out = [];
  let at = 0;
  for (const r of [...(ranges || [])].sort((a, b) => a.start - b.start)) {
    if (r.start < at || r.end > chars.length) continue;
    if (r.start > at) out.push(chars.slice(at, r.start).join(''));
    out.push(h('mark', { class: 'search-match', text: chars.slice(r.start, r.end).join('') }));
    at = r.end;
  }
  if (at < chars.length) out.push(chars.slice(at).join(''));
  return out;
}

function resultItem(m) {
  const date = new Date(m.created_at);
  const channel = store.findChannel(m.channel_id);
  const where = m.server_id ? `#${channel ? channel.name : 'unknown'}` : (channel ? channelTitle(store, channel) : 'Direct message');
  const name = store.displayName(m.author && m.author.id, m.author, m.server_id);
  return h('li', { class: 'search-result' },
    h('button', { type: 'button', class: 'search-result-btn', 'data-testid': 'search-result', 'data-message-id': m.id,
      'aria-label': `Open the message by ${name} in ${where}`, onclick: () => openResult(m) },
      h('div', { class: 'msg-head' },
        h('span', { class: 'search-where muted', text: where }),
        h('span', { class: 'author', text: name }),
        h('time', { datetime: m.created_at, text: date.toLocaleString() })),
      h('div', { class: 'content', 'data-testid': 'search-result-content' }, highlighted(m.content, m.highlights))));
}

function openResult(m) {
  const serverId = m.server_id || HOME;
  jumpToMessage(m.channel_id, m.id, () => {
    if (store.currentServerId !== serverId) selectServer(serverId);
    if (store.currentChannelId !== m.channel_id) selectChannel(m.channel_id);
  });
}
