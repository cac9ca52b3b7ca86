// Threads and forums (docs/threads.md): the "Create thread" message action, the thread side
// pane (its messages and composer), the channel header's thread list, and a forum channel's
// post list with the new-post dialog.

import { api, store, gateway, ui } from './context.js';
import { PERM } from './state.js';
import { h, clear, avatar, openDialog, field, toast } from './dom.js';
import { renderMarkdown } from './markdown.js';

let pane = null;        // the side pane's elements
let open = null;        // the thread shown in it: {thread, messages: []}
let forumPane = null;   // the forum view, in place of the message list
let forumFor = null;    // the forum channel it shows
let forumTag = '';      // the tag filter
const forumPostIds = new Set();  // posts listed in it

const threadsPath = (id, q = '') => `/channels/${id}/threads${q}`;

/** The "Create thread" action of a message in a server's text channel, or null. */
export function threadAction(m) {
  const c = store.findChannel(m.channel_id);
  if (!c || c.type !== 'text' || !store.can(PERM.CREATE_PUBLIC_THREADS, m.server_id)) return null;
  return h('button', { class: 'icon-btn tiny', 'aria-label': 'Create thread', title: 'Create thread', 'data-testid': 'create-thread', text: '🧵', onclick: () => createFromMessage(m) });
}

async function createFromMessage(m) {
  const name = field({ label: 'Thread name', name: 'name', value: (m.content || '').slice(0, 40) || 'Thread', maxlength: 100, testid: 'thread-name' });
  const thread = await openDialog({
    title: 'Create thread', testid: 'create-thread-dialog', content: name.el,
    actions: [{ label: 'Cancel', value: null }, { label: 'Create', submit: true, onClick: () => api.post(`/channels/${m.channel_id}/messages/${m.id}/threads`, { name: name.input.value.trim() }) }],
  });
  if (thread) openThread(thread);
}

/** The channel header's button listing the threads of a text channel. */
export function threadsButton(c) {
  if (!c || c.type !== 'text') return null;
  return h('button', { class: 'icon-btn threads-btn', 'aria-label': 'Threads', title: 'Threads', 'aria-haspopup': 'dialog', 'data-testid': 'threads-button', text: '🧵', onclick: () => showThreadList(c) });
}

async function showThreadList(c) {
  let threads = [];
  try { threads = await api.get(threadsPath(c.id, '?limit=50')); } catch (e) { toast(`Could not load threads: ${e.message}`, 'error'); return; }
  const list = h('ul', { class: 'thread-list', 'data-testid': 'thread-list' });
  let close = () => {};
  for (const t of threads) {
    list.append(h('li', {},
      h('button', { class: 'link-btn thread-item', 'data-testid': 'thread-item', 'data-thread-id': t.id, onclick: () => { close(); openThread(t); } },
        h('span', { class: 'thread-name', text: t.name }),
        h('span', { class: 'muted small', text: ` · ${t.thread_metadata.message_count} messages${t.thread_metadata.archived ? ' · archived' : ''}` }))));
  }
  if (!threads.length) list.append(h('li', { class: 'muted', text: 'No threads yet. Start one from a message.' }));
  const newThread = h('button', { type: 'button', class: 'btn secondary', 'data-testid': 'new-thread', text: 'New thread', onclick: () => { close(); createStandalone(c); } });
  openDialog({ title: `Threads in #${c.name}`, testid: 'threads-dialog', content: h('div', {}, list, store.can(PERM.CREATE_PUBLIC_THREADS, c.server_id) ? newThread : null),
    onOpen: (d) => { close = () => d.close(undefined); } });
}

async function createStandalone(c) {
  const name = field({ label: 'Thread name', name: 'name', maxlength: 100, testid: 'thread-name' });
  const thread = await openDialog({
    title: 'New thread', testid: 'create-thread-dialog', content: name.el,
    actions: [{ label: 'Cancel', value: null }, { label: 'Create', submit: true, onClick: () => api.post(threadsPath(c.id), { name: name.input.value.trim() }) }],
  });
  if (thread) openThread(thread);
}

// ------------------------------------------------------------------ the side pane

function buildPane() {
  const title = h('h3', { class: 'thread-title', 'data-testid': 'thread-title' });
  const meta = h('span', { class: 'muted small', 'data-testid': 'thread-meta' });
  const list = h('ol', { class: 'thread-messages', 'data-testid': 'thread-messages', 'aria-live': 'polite' });
  const input = h('textarea', { rows: 1, class: 'composer-input', 'data-testid': 'thread-composer', 'aria-label': 'Message the thread', placeholder: 'Message the thread' });
  const form = h('form', { class: 'thread-composer' }, input, h('button', { type: 'submit', class: 'icon-btn send', 'aria-label': 'Send to thread', text: '➤' }));
  form.addEventListener('submit', (e) => { e.preventDefault(); sendToThread(); });
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); sendToThread(); } });
  const el = h('aside', { class: 'thread-pane', 'aria-label': 'Thread', 'data-testid': 'thread-pane', hidden: true },
    h('header', { class: 'thread-head' }, h('div', {}, title, meta),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close thread', 'data-testid': 'close-thread', text: '✕', onclick: closeThread })),
    list, form);
  ui.shell.append(el);
  pane = { el, title, meta, list, input };
}

export async function openThread(thread) {
  if (!pane || !pane.el.isConnected) buildPane();
  open = { thread, messages: [] };
  pane.el.hidden = false;
  pane.el.dataset.threadId = thread.id;
  renderPaneHead();
  clear(pane.list);
  try {
    const page = await api.messages(thread.id, { limit: 50 });
    if (!open || open.thread.id !== thread.id) return;
    // Live messages that arrived while loading stay.
    const seen = new Set(page.map((m) => m.id));
    open.messages = page.slice().reverse().concat(open.messages.filter((m) => !seen.has(m.id)));
  } catch (e) {
    toast(`Could not load the thread: ${e.message}`, 'error');
  }
  renderPaneMessages();
  pane.input.focus();
}

function closeThread() {
  open = null;
  if (pane) { pane.el.hidden = true; delete pane.el.dataset.threadId; }
}

function renderPaneHead() {
  const t = open.thread;
  pane.title.textContent = t.name;
  const m = t.thread_metadata || {};
  pane.meta.textContent = `${m.message_count ?? 0} messages${m.archived ? ' · archived' : ''}${m.locked ? ' · locked' : ''}`;
}

function renderPaneMessages() {
  clear(pane.list);
  for (const m of open.messages) {
    pane.list.append(h('li', { class: 'thread-message', 'data-testid': 'thread-message', 'data-message-id': m.id },
      avatar(m.author, 24),
      h('div', {}, h('span', { class: 'author', text: m.author.display_name || m.author.username }),
        h('div', { class: 'content', 'data-testid': 'thread-message-content' }, renderMarkdown(m.content)))));
  }
  pane.list.scrollTop = pane.list.scrollHeight;
}

async function sendToThread() {
  const content = pane.input.value.trim();
  if (!content || !open) return;
  pane.input.value = '';
  try {
    const m = await api.sendMessage(open.thread.id, content);
    addMessage(m);
  } catch (e) {
    pane.input.value = content;
    toast(`Not sent: ${e.message}`, 'error');
  }
}

function addMessage(m) {
  if (!open || open.thread.id !== m.channel_id || open.messages.some((x) => x.id === m.id)) return;
  open.messages.push(m);
  renderPaneMessages();
}

// ------------------------------------------------------------------ forum view

/** Shows the forum view in place of the message list when the current channel is a forum. */
export function renderForum() {
  if (!ui) return;
  const c = store.channel;
  const isForum = !!c && c.type === 'forum';
  ui.shell.classList.toggle('forum-mode', isForum);
  if (!forumPane) {
    forumPane = h('section', { class: 'forum', 'aria-label': 'Forum posts', 'data-testid': 'forum-view', hidden: true });
    ui.messages.parentNode.insertBefore(forumPane, ui.messages);
  }
  forumPane.hidden = !isForum;
  if (!isForum) { forumFor = null; return; }
  if (forumFor !== c.id) { forumFor = c.id; forumTag = ''; loadForum(); }
}

async function loadForum() {
  const c = store.channel;
  if (!c || c.type !== 'forum') return;
  const q = `?limit=50${forumTag ? `&tag=${forumTag}` : ''}`;
  let posts = [];
  try { posts = await api.get(threadsPath(c.id, q)); } catch (e) { toast(`Could not load posts: ${e.message}`, 'error'); return; }
  if (forumFor !== c.id) return;
  forumPostIds.clear();
  for (const p of posts) forumPostIds.add(p.id);
  const tags = c.available_tags || [];
  const tagName = (id) => (tags.find((t) => t.id === id) || {}).name;
  const filter = h('select', { 'aria-label': 'Filter by tag', 'data-testid': 'forum-tag-filter', onchange: (e) => { forumTag = e.target.value; loadForum(); } },
    h('option', { value: '', text: 'All tags' }), tags.map((t) => h('option', { value: t.id, text: t.name, selected: t.id === forumTag })));
  clear(forumPane).append(
    h('header', { class: 'forum-head' },
      h('button', { type: 'button', class: 'btn primary', 'data-testid': 'new-post', text: 'New post', onclick: () => newPost(c) }),
      tags.length ? filter : null,
      store.can(PERM.MANAGE_CHANNELS, c.server_id) ? h('button', { type: 'button', class: 'btn secondary', 'data-testid': 'edit-tags', text: 'Tags…', onclick: () => editTags(c) }) : null),
    h('ul', { class: 'forum-posts', 'data-testid': 'forum-posts' }, posts.length ? posts.map((p) => h('li', {},
      h('button', { class: 'forum-post', 'data-testid': 'forum-post', 'data-thread-id': p.id, onclick: () => openThread(p) },
        h('span', { class: 'post-title', 'data-testid': 'post-title', text: p.name }),
        h('span', { class: 'post-tags' }, (p.thread_metadata.applied_tags || []).map((id) => h('span', { class: 'tag', 'data-testid': 'post-tag', text: tagName(id) || '?' }))),
        h('span', { class: 'muted small', 'data-testid': 'post-replies', text: replies(p) }))))
      : h('li', { class: 'muted', text: 'No posts yet.' })));
}

async function newPost(c) {
  const title = field({ label: 'Title', name: 'name', maxlength: 100, testid: 'post-title-input' });
  const body = field({ label: 'Message', name: 'message', type: 'textarea', testid: 'post-body-input' });
  const boxes = (c.available_tags || []).map((t) => {
    const box = h('input', { type: 'checkbox', value: t.id, 'data-testid': 'post-tag-option' });
    return { box, el: h('label', { class: 'tag-option' }, box, ` ${t.name}`) };
  });
  const post = await openDialog({
    title: 'New post', testid: 'new-post-dialog',
    content: h('div', {}, title.el, body.el, boxes.length ? h('fieldset', {}, h('legend', { text: 'Tags (up to 5)' }), boxes.map((b) => b.el)) : null),
    actions: [{ label: 'Cancel', value: null }, { label: 'Post', submit: true, onClick: () => api.post(threadsPath(c.id), {
      name: title.input.value.trim(), message: { content: body.input.value }, applied_tags: boxes.filter((b) => b.box.checked).map((b) => b.box.value),
    }) }],
  });
  if (post) loadForum();
}

async function editTags(c) {
  const names = field({ label: 'Tags (comma-separated, up to 20)', name: 'available_tags', value: (c.available_tags || []).map((t) => t.name).join(', '), testid: 'forum-tags-input' });
  const updated = await openDialog({
    title: 'Forum tags', testid: 'forum-tags-dialog', content: names.el,
    actions: [{ label: 'Cancel', value: null }, { label: 'Save', submit: true, onClick: () => {
      const list = names.input.value.split(',').map((s) => s.trim()).filter(Boolean);
      // Keep the ids of tags whose names stay, so posts keep them.
      const tags = list.map((name) => { const old = (c.available_tags || []).find((t) => t.name === name); return old ? { id: old.id, name } : { name }; });
      return api.patch(`/channels/${c.id}`, { available_tags: tags });
    } }],
  });
  if (updated) { c.available_tags = updated.available_tags; loadForum(); }
}

// ------------------------------------------------------------------ live updates

gateway.on('MESSAGE_CREATE', (m) => {
  if (!m) return;
  addMessage(m);
  // A reply in a post of the forum on screen moves it up and counts.
  if (forumFor && forumPostIds.has(m.channel_id)) loadForum();
});
gateway.on('THREAD_CREATE', (t) => { if (t && t.parent_id === forumFor) loadForum(); });
gateway.on('THREAD_UPDATE', (t) => {
  if (t && open && open.thread.id === t.id) { open.thread = t; renderPaneHead(); }
  if (t && t.parent_id === forumFor) loadForum();
});
gateway.on('THREAD_DELETE', (t) => {
  if (t && open && open.thread.id === t.id) closeThread();
  if (t && t.parent_id === forumFor) loadForum();
});

function replies(post) {
  const n = Math.max(0, (post.thread_metadata.message_count || 0) - 1);
  return `${n} ${n === 1 ? 'reply' : 'replies'}`;
}
