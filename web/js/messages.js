// The messages view: the message list (paging, grouping, edit, delete), the typing line and the composer.

import { api, store, ui, invalidate } from './context.js';
import { PERM, cmpId } from './state.js';
import { renderMarkdown } from './markdown.js';
import { onlyEmoji, stickerList, stickerButton } from './emoji.js';
import { attachMentionAutocomplete, linkPlainMentions } from './mentions.js';
import { attachCommandAutocomplete, commandFor, runCommand, commandStatus, renderStatus as renderCommandStatus } from './commands.js';
import { h, clear, avatar, openDialog, toast } from './dom.js';
import { icon } from './icons.js';
import { reactionBar, openReactionPicker, loadPins, pinnedIds, setPinned, rememberUser } from './community.js';
import { channelTitle, isPrivate, mentionsMe } from './inbox.js';
import { attachmentList, setupUploads, progressLine, showProgress } from './attachments.js';
import { reportMessageDialog, verifyHuman } from './safety.js';
import { threadAction } from './threads.js';

const lastTypingSent = new Map();  // channel_id -> ms
let uploads = null;  // the composer's file tray (attachments.js)
const uploadsInFlight = new Map();  // nonce -> AbortController

const GROUP_MS = 5 * 60 * 1000;
// Flag of an alert posted by AutoMod or raid protection (chat/src/safety: ALERT_FLAG).
const SAFETY_ALERT = 1 << 24;
const TYPING_SEND_EVERY_MS = 8000;

/** The message list, the typing line and the composer, wired to this module; the shell places them. */
export function buildMessagesView() {
  // A list (its items must stay list items for screen readers), announced politely as it grows.
  const messages = h('ol', { class: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite', 'aria-relevant': 'additions', 'data-testid': 'message-list', tabindex: '0' });
  messages.addEventListener('scroll', onMessagesScroll, { passive: true });
  const typing = h('div', { class: 'typing', 'data-testid': 'typing-indicator', 'aria-live': 'polite' });
  const composerInput = h('textarea', { rows: 1, class: 'composer-input', 'data-testid': 'composer', 'aria-label': 'Message', placeholder: 'Message' });
  const counter = h('div', { class: 'char-counter', 'data-testid': 'char-counter', 'aria-live': 'polite', hidden: true });
  const composerError = h('p', { class: 'composer-error', role: 'alert', 'data-testid': 'composer-error', hidden: true });
  const composer = h('form', { class: 'composer', 'aria-label': 'Send a message' });
  // Files dropped on the message list or the composer, or pasted, join the tray.
  uploads = setupUploads({ input: composerInput, dropZones: [composer, messages] });
  composer.append(uploads.tray, commandStatus(), h('div', { class: 'composer-row' }, uploads.button, uploads.picker, composerInput, counter, stickerButton(),
    h('button', { type: 'submit', class: 'icon-btn send', 'aria-label': 'Send message', text: '➤' })));
  // The autocomplete's keys (Enter, Tab, arrows, Escape) win while its list is open.
  attachMentionAutocomplete(composerInput, { container: composer });
  attachCommandAutocomplete(composerInput, { container: composer });
  composerInput.addEventListener('keydown', onComposerKey);
  composerInput.addEventListener('input', onComposerInput);
  composer.addEventListener('submit', (e) => { e.preventDefault(); sendFromComposer(); });
  return { messages, typing, composerInput, counter, composerError, composer };
}

export async function ensureMessagesLoaded() {
  const id = store.currentChannelId;
  if (!id) return;
  // A forum has posts, not messages (threads.js shows them).
  if (store.channel && store.channel.type === 'forum') return;
  const st = store.msgState(id);
  // A stretch of older messages (a search result's context) is not caught up: the present
  // is loaded again instead.
  if (st.loaded && st.stale && st.detached && !st.loading) { resetToPresent(st); }
  if (st.loaded && st.stale && !st.loading) { await catchUp(id, st); return; }
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

function resetToPresent(st) {
  st.loaded = false;
  st.detached = false;
  st.stale = false;
  st.hasMore = true;
  st.list = st.list.filter((m) => m.pending);
}

// The message a search jumped to: highlighted for a while, scrolled to once it is drawn.
const HIT_MS = 4000;
let hitId = null;
let hitTimer = null;
let scrollToId = null;
let scrollDone = 0;
// Half of an `around` page: a window with fewer newer messages reaches the present.
const AROUND = 50;

/**
 * Shows a message in its context: loads the history around it (`?around=`) unless it is
 * already held, lets `navigate` select its channel, then scrolls to it and highlights it.
 * When the window does not reach the newest message the channel is "detached": live messages
 * are not merged into it, and a bar offers to go back to the present.
 */
export async function jumpToMessage(channelId, messageId, navigate) {
  const st = store.msgState(channelId);
  if (!(st.loaded && st.list.some((m) => m.id === messageId))) {
    let page;
    try {
      page = await api.messages(channelId, { around: messageId, limit: AROUND });
    } catch (e) {
      toast(`Could not open the message: ${e.message}`, 'error');
      return;
    }
    const newer = page.filter((m) => cmpId(m.id, messageId) > 0).length;
    const older = page.length - newer;
    st.list = page.slice().reverse().concat(st.list.filter((m) => m.pending && newer < AROUND / 2));
    st.loaded = true;
    st.loading = false;
    st.stale = false;
    st.hasMore = older >= AROUND / 2;
    st.detached = newer >= AROUND / 2;
  }
  hitId = messageId;
  scrollToId = messageId;
  clearTimeout(hitTimer);
  hitTimer = setTimeout(() => {
    hitId = null;
    if (ui) for (const el of ui.messages.querySelectorAll('.msg.search-hit')) el.classList.remove('search-hit');
  }, HIT_MS);
  if (navigate) navigate();
  if (store.currentChannelId === channelId) renderMessages({ reset: true });
}

function jumpToPresent() {
  const id = store.currentChannelId;
  if (!id) return;
  resetToPresent(store.msgState(id));
  renderMessages({ reset: true });
  ensureMessagesLoaded();
}

// Catching up after a re-identify: the last CATCH_UP_WINDOW messages held and everything after
// them, in pages of CATCH_UP_PAGE; past CATCH_UP_MAX_PAGES the channel starts over from its
// newest page instead.
const CATCH_UP_WINDOW = 50;
const CATCH_UP_PAGE = 100;
const CATCH_UP_MAX_PAGES = 10;

/**
 * A channel held before a new READY (the gateway session was lost, e.g. its node died, and the
 * client identified again) missed what was sent meanwhile. Fetches the history after the newest
 * messages it holds (`?after=`) and merges it by id: no duplicates, no gap. The tail it held is
 * fetched again with it, so edits and deletions made meanwhile show too. Messages that arrive
 * live meanwhile merge the same way (`putMessage`).
 */
async function catchUp(id, st) {
  st.loading = true;
  st.stale = false;
  const held = st.list.filter((m) => !m.pending);
  const w = Math.max(0, held.length - CATCH_UP_WINDOW);
  // Everything after `anchor` is fetched; '0' when we hold the channel from its start.
  const anchor = w > 0 ? held[w - 1].id : (st.hasMore && held.length ? held[0].id : '0');
  const fetched = [];
  let complete = false;
  try {
    let cursor = anchor;
    for (let i = 0; i < CATCH_UP_MAX_PAGES; i++) {
      const page = await api.messages(id, { after: cursor, limit: CATCH_UP_PAGE });  // newest first
      fetched.push(...page);
      if (page.length < CATCH_UP_PAGE) { complete = true; break; }
      cursor = page[0].id;
    }
  } catch { /* gone or hidden now: start over below (which says why) */ }
  st.loading = false;
  if (!complete) {
    st.loaded = false;
    st.list = st.list.filter((m) => m.pending);
    st.hasMore = true;
    if (store.currentChannelId === id) await ensureMessagesLoaded();
    return;
  }
  const got = new Set(fetched.map((m) => m.id));
  // Held before, in the fetched range, and not fetched again: deleted meanwhile.
  const gone = new Set(held.filter((m) => cmpId(m.id, anchor) > 0 && !got.has(m.id)).map((m) => m.id));
  if (gone.size) st.list = st.list.filter((m) => !gone.has(m.id));
  for (const m of fetched.reverse()) store.putMessage(m);
  if (store.currentChannelId === id) invalidate(['messages']);
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

export function renderMessages({ reset = false, prepend = false } = {}) {
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
    // A webhook posts under a name per message: a new name starts a new group.
    const grouped = !newDay && prev && prev.author && m.author && prev.author.id === m.author.id &&
      prev.author.display_name === m.author.display_name &&
      (date - new Date(prev.created_at)) < GROUP_MS;
    el.append(messageItem(m, grouped, date));
    prev = m;
  }
  if (st.detached) {
    el.append(h('li', { class: 'jump-present', 'data-testid': 'jump-present' },
      h('span', { class: 'muted', text: 'You are viewing older messages.' }),
      h('button', { type: 'button', class: 'link-btn', text: 'Jump to present', onclick: jumpToPresent })));
  }
  if (editFocused) {
    const input = el.querySelector('[data-testid="edit-input"]');
    if (input) { input.focus(); input.setSelectionRange(editSel[0], editSel[1]); }
  }
  if (prepend) el.scrollTop = el.scrollHeight - prevHeight + prevTop;
  else if (reset || atBottom) el.scrollTop = el.scrollHeight;
  if (scrollToId) {
    // Every render until the next frame centres it: selecting a channel or a server draws the
    // list more than once (some with `reset`, which would leave it at the bottom).
    const hit = el.querySelector(`.msg[data-message-id="${scrollToId}"]`);
    if (hit) {
      hit.scrollIntoView({ block: 'center' });
      if (!scrollDone) scrollDone = requestAnimationFrame(() => { scrollToId = null; scrollDone = 0; });
    }
  }
}

function messageItem(m, grouped, date) {
  rememberUser(m.author);
  const mine = store.me && m.author && m.author.id === store.me.id;
  const name = store.displayName(m.author && m.author.id, m.author, m.server_id);
  const li = h('li', {
    class: `msg${(m.flags || 0) & SAFETY_ALERT ? ' safety-alert' : ''}${grouped ? ' cont' : ''}${m.id === hitId ? ' search-hit' : ''}${m.pending ? ' pending' : ''}${m.failed ? ' failed' : ''}${!m.pending && mentionsMe(store, m) ? ' mentions-me' : ''}`,
    'data-testid': 'message', 'data-message-id': m.id, 'data-author-id': m.author && m.author.id,
  });
  if (!grouped) {
    // The author as known now (a USER_UPDATE changes their avatar in every message shown),
    // else as the message carried them.
    const author = (m.author && store.userById(m.author.id)) || m.author;
    li.append(avatar(author, 40, 'msg-avatar'),
      h('div', { class: 'msg-head' },
        h('span', { class: 'author', 'data-testid': 'message-author', text: name }),
        // Bots and webhooks are told apart from people (docs/bots.md).
        m.webhook_id ? h('span', { class: 'bot-tag', 'data-testid': 'bot-tag', title: 'Posted by a webhook', text: 'WEBHOOK' })
          : m.author && m.author.bot ? h('span', { class: 'bot-tag', 'data-testid': 'bot-tag', title: 'A bot account', text: 'BOT' }) : null,
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
    if (!m.content) content.classList.add('empty');
    // A message of custom emoji only shows them large, as Discord does.
    if (onlyEmoji(m.content)) content.classList.add('jumbo');
    li.append(h('div', { class: 'msg-body' }, content, attachmentList(m), stickerList(m),
      m.upload ? progressLine(m, () => { const c = uploadsInFlight.get(m.nonce); if (c) c.abort(); }) : null,
      m.pending ? null : embedCards(m, mine), m.pending ? null : reactionBar(m)));
  }
  if (!m.pending && !m.failed && !editing) {
    const pinned = pinnedIds(m.channel_id).has(m.id);
    const canPin = store.can(PERM.MANAGE_MESSAGES, m.server_id);
    const canDelete = mine || store.can(PERM.MANAGE_MESSAGES, m.server_id);
    li.append(h('div', { class: 'msg-actions' },
      h('button', { class: 'icon-btn tiny', 'aria-label': 'Add reaction', title: 'Add reaction', 'data-testid': 'add-reaction', onclick: (e) => openReactionPicker(m, e.currentTarget) }, icon('smile', 14)),
      threadAction(m),
      canPin ? h('button', { class: `icon-btn tiny${pinned ? ' on' : ''}`, 'aria-label': pinned ? 'Unpin message' : 'Pin message', title: pinned ? 'Unpin' : 'Pin', 'data-testid': 'pin-message', 'aria-pressed': String(pinned), onclick: () => setPinned(m, !pinned) }, icon('pin', 14)) : null,
      mine ? h('button', { class: 'icon-btn tiny', 'aria-label': 'Edit message', title: 'Edit', 'data-testid': 'edit-message', text: '✎', onclick: () => startEdit(m) }) : null,
      !mine && m.server_id ? h('button', { class: 'icon-btn tiny', 'aria-label': 'Report message', title: 'Report', 'data-testid': 'report-message', text: '⚑', onclick: () => reportMessageDialog(m) }) : null,
      canDelete ? h('button', { class: 'icon-btn tiny danger', 'aria-label': 'Delete message', title: 'Delete (shift-click skips the question)', 'data-testid': 'delete-message', onclick: (e) => deleteMessage(m, e.shiftKey) }, icon('trash', 14)) : null));
  }
  return li;
}

// ------------------------------------------------------------------ link previews (docs/link-previews.md)

const SUPPRESS_EMBEDS = 4;
// Preview images come from this server only (never the linked site: that would leak viewers'
// addresses); anything else in an embed is ignored.
const EMBED_IMAGE_PATH = '/api/v1/link-previews/images/';
const EMBED_IMAGE_MAX = { w: 400, h: 300 };

function embedCards(m, mine) {
  if (!Array.isArray(m.embeds) || !m.embeds.length || (m.flags & SUPPRESS_EMBEDS)) return null;
  return h('div', { class: 'embeds', 'data-testid': 'embeds' }, m.embeds.map((e) => embedCard(m, e, mine)));
}

function httpUrl(raw) {
  try {
    const u = new URL(raw);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function embedCard(m, e, mine) {
  const href = httpUrl(e.url);
  const card = h('article', { class: 'embed', 'data-testid': 'embed', 'aria-label': `Link preview: ${e.title || e.site_name || e.url}` });
  if (e.site_name) card.append(h('div', { class: 'embed-site', 'data-testid': 'embed-site', text: e.site_name }));
  if (e.title) {
    card.append(href
      ? h('a', { class: 'embed-title', 'data-testid': 'embed-title', href, target: '_blank', rel: 'noopener noreferrer', text: e.title })
      : h('div', { class: 'embed-title', 'data-testid': 'embed-title', text: e.title }));
  }
  if (e.description) card.append(h('p', { class: 'embed-desc', 'data-testid': 'embed-description', text: e.description }));
  const img = e.image;
  if (img && typeof img.url === 'string' && img.url.startsWith(EMBED_IMAGE_PATH) && img.width > 0 && img.height > 0) {
    // The size is known before the bytes arrive: the space is reserved, nothing jumps.
    const scale = Math.min(1, EMBED_IMAGE_MAX.w / img.width, EMBED_IMAGE_MAX.h / img.height);
    card.append(h('img', {
      class: 'embed-image', 'data-testid': 'embed-image', src: img.url, alt: '', loading: 'lazy', decoding: 'async',
      width: Math.max(1, Math.round(img.width * scale)), height: Math.max(1, Math.round(img.height * scale)),
    }));
  }
  if (mine) {
    card.append(h('button', {
      type: 'button', class: 'icon-btn tiny embed-remove', 'data-testid': 'remove-embed', text: '×',
      'aria-label': 'Remove link previews', title: 'Remove link previews', onclick: () => suppressEmbeds(m),
    }));
  }
  return card;
}

async function suppressEmbeds(m) {
  try {
    const updated = await api.setMessageFlags(m.channel_id, m.id, (m.flags || 0) | SUPPRESS_EMBEDS);
    store.apply('MESSAGE_UPDATE', updated);
    renderMessages();
  } catch (e) {
    toast(`Could not remove the preview: ${e.message}`, 'error', 8000);
  }
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

export function renderComposer() {
  const c = store.channel;
  // A "not sent" note belongs to the channel it was written in.
  if (ui.composerError.dataset.channel && ui.composerError.dataset.channel !== String(store.currentChannelId)) setComposerError('');
  ui.composer.hidden = !c;
  renderCommandStatus();
  const label = c ? `Message ${channelTitle(store, c)}` : 'Message';
  ui.composerInput.placeholder = label;
  ui.composerInput.setAttribute('aria-label', label);
}

export function renderTyping() {
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

export function setComposerError(text, kind = '', action = null) {
  ui.composerError.textContent = text;
  if (text && action) {
    const b = h('button', { type: 'button', class: 'btn primary small', 'data-testid': 'composer-error-action', text: action.label });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await action.run(); setComposerError(''); } catch (e) { setComposerError(e.message, kind); }
    });
    ui.composerError.append(' ', b);
  }
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
  const withFiles = uploads && uploads.count() > 0;
  if (!id || (!typed.trim() && !withFiles)) return;
  const over = charCount(typed) - MAX_MESSAGE_CHARS;
  if (over > 0) {
    // Nothing is lost and nothing is sent: say by how much, and keep the text to shorten.
    setComposerError(tooLongText(over), 'length');
    renderCounter();
    return;
  }
  // `/name …` naming one of this server's commands goes to its bot, not into the channel.
  if (!withFiles && typed.trimStart().startsWith('/')) {
    let interaction = null;
    try {
      interaction = commandFor(typed);
    } catch (e) {
      setComposerError(e.message, 'command');
      return;
    }
    if (interaction) {
      setComposerError('');
      ui.composerInput.value = '';
      ui.composerInput.style.height = 'auto';
      renderCounter();
      try {
        await runCommand(interaction);
      } catch (e) {
        // Keep the command so it can be fixed and sent again.
        if (!ui.composerInput.value) { ui.composerInput.value = typed; renderCounter(); }
        setComposerError(`/${interaction.command.name}: ${e.message}`, 'command');
      }
      return;
    }
  }
  const content = typed.trim() ? linkPlainMentions(typed) : '';
  const files = withFiles ? uploads.take() : [];
  setComposerError('');
  ui.composerInput.value = '';
  ui.composerInput.style.height = 'auto';
  renderCounter();
  lastTypingSent.set(id, 0);
  const nonce = randomNonce();
  const st = store.msgState(id);
  // Sending from an older stretch: the message belongs after the present, so go back to it.
  if (st.detached) { resetToPresent(st); ensureMessagesLoaded(); }
  const total = files.reduce((n, f) => n + f.size, 0);
  const pending = {
    id: `pending-${nonce}`, channel_id: id, server_id: store.channel ? store.channel.server_id : null, author: store.me,
    content, nonce, created_at: new Date().toISOString(), edited_at: null, pending: true,
    upload: files.length ? { names: files.map((f) => f.name), loaded: 0, total } : null,
  };
  st.list.push(pending);
  renderMessages({ reset: true });
  try {
    let m;
    if (files.length) {
      const ctl = new AbortController();
      uploadsInFlight.set(nonce, ctl);
      try {
        m = await api.sendMessageWithFiles(id, { content, nonce }, files, {
          signal: ctl.signal,
          onProgress: (loaded, t) => { pending.upload.loaded = loaded; if (t) pending.upload.total = t; showProgress(nonce, loaded, t); },
        });
      } finally {
        uploadsInFlight.delete(nonce);
      }
    } else {
      m = await api.sendMessage(id, content, nonce);
    }
    store.putMessage(m);
  } catch (e) {
    st.list.splice(st.list.indexOf(pending), 1);
    // Keep the text and the files so the user can send again.
    if (!ui.composerInput.value) { ui.composerInput.value = typed; renderCounter(); }
    if (files.length) uploads.restore(files);
    if (e.name === 'AbortError') setComposerError('Upload cancelled.', 'send');
    // AutoMod and raid protection say exactly what happened (the rule, the wait): shown as is.
    else if (e.code === 200000) setComposerError(e.serverMessage, 'automod');
    else if (e.code === 200010) setComposerError(`${e.serverMessage}.`, 'verify', { label: 'I am human', run: () => verifyHuman(pending.server_id) });
    else if (e.code === 200011 || e.code === 50009) setComposerError(`Message not sent: ${e.serverMessage}.`, 'safety');
    else setComposerError(`Message not sent: ${e.message}`, 'send');
  }
  if (store.currentChannelId === id) renderMessages();
}
