// Custom emoji and stickers (docs/emoji.md): the server settings tabs that manage them, the
// inline images in messages and reactions, the `:name` choices for the composer's autocomplete,
// the custom part of the reaction picker and the composer's sticker picker.
//
// A server's lists arrive in READY (and SERVER_CREATE) and are replaced whole by
// SERVER_EMOJIS_UPDATE / SERVER_STICKERS_UPDATE (state.js). Images are served by id at
// /api/v1/emojis/{id} and /api/v1/stickers/{id} without a token, so plain <img> tags work.

import { api, store, gateway, invalidate } from './context.js';
import { h, clear, toast } from './dom.js';
import { PERM } from './state.js';
import { addSettingsTab } from './community.js';

const EMOJI_MAX = 256 * 1024;
const STICKER_MAX = 512 * 1024;
const NAME_RE = /^[A-Za-z0-9_]{2,32}$/;
/** A custom emoji as stored in a reaction: `name:id`. */
const REACTION_RE = /^([A-Za-z0-9_]{2,32}):(\d{1,20})$/;

export function emojiUrl(id) { return `/api/v1/emojis/${id}`; }

/** An inline custom emoji image; `big` for a message of emoji only. */
export function emojiImg(name, id, { big = false } = {}) {
  return h('img', {
    class: `custom-emoji${big ? ' big' : ''}`, src: emojiUrl(id), alt: `:${name}:`, title: `:${name}:`,
    draggable: 'false', loading: 'lazy', 'data-testid': 'custom-emoji', 'data-emoji-id': id,
  });
}

/** What a reaction chip shows: the unicode emoji, or a custom one's image. */
export function reactionFace(emoji) {
  const m = REACTION_RE.exec(emoji);
  return m ? emojiImg(m[1], m[2]) : document.createTextNode(emoji);
}

/** A reaction's spoken name (`:name:` for a custom one). */
export function reactionName(emoji) {
  const m = REACTION_RE.exec(emoji);
  return m ? `:${m[1]}:` : emoji;
}

/** The emoji of a server the user may use: unrestricted ones, or those of one of their roles. */
export function usableEmojis(serverId = store.currentServerId) {
  const s = serverId && store.servers.get(serverId);
  if (!s) return [];
  const me = store.me && store.me.id;
  const mine = new Set((me && store.member(s.id, me)?.roles) || []);
  const all = s.owner_id === me || store.can(PERM.ADMINISTRATOR, s.id);
  return (s.emojis || []).filter((e) => all || !e.roles || !e.roles.length || e.roles.some((r) => mine.has(r)));
}

/** `:query` choices for the composer (mentions.js): tokens `<:name:id>` / `<a:name:id>`. */
export function emojiCandidates(query, max = 10) {
  const q = query.toLowerCase();
  return usableEmojis()
    .filter((e) => e.name.toLowerCase().includes(q))
    .sort((a, b) => (b.name.toLowerCase().startsWith(q) - a.name.toLowerCase().startsWith(q)) || a.name.localeCompare(b.name))
    .slice(0, max)
    .map((e) => ({
      kind: 'emoji', id: e.id, label: `:${e.name}:`, detail: e.animated ? 'animated emoji' : 'emoji',
      token: `<${e.animated ? 'a' : ''}:${e.name}:${e.id}>`, image: emojiUrl(e.id),
    }));
}

/** The custom emoji buttons of the reaction picker (community.js); `pick('name:id')`. */
export function customReactionButtons(serverId, pick) {
  return usableEmojis(serverId).map((e) => h('button', {
    type: 'button', class: 'emoji-btn custom', 'aria-label': `React with :${e.name}:`, title: `:${e.name}:`,
    'data-emoji': `${e.name}:${e.id}`, 'data-testid': 'custom-reaction-option',
    onclick: () => pick(`${e.name}:${e.id}`),
  }, emojiImg(e.name, e.id)));
}

/** The stickers sent with a message, as larger images. */
export function stickerList(m) {
  if (!m.stickers || !m.stickers.length) return null;
  return h('div', { class: 'stickers' }, m.stickers.map((st) => h('img', {
    class: 'sticker', src: st.url, alt: st.name, title: st.description ? `${st.name} — ${st.description}` : st.name,
    loading: 'lazy', draggable: 'false', 'data-testid': 'sticker', 'data-sticker-id': st.id,
  })));
}

/** Whether rendered content holds only custom emoji (and spaces): they are then shown large. */
export function onlyEmoji(content) {
  if (!content) return false;
  const found = content.match(/<a?:[A-Za-z0-9_]{2,32}:\d{1,20}>/g) || [];
  return found.length > 0 && found.length <= 27 && content.replace(/<a?:[A-Za-z0-9_]{2,32}:\d{1,20}>/g, '').trim() === '';
}

// ------------------------------------------------------------------ the sticker picker

let pickerEl = null;
function closeStickerPicker() {
  if (!pickerEl) return;
  pickerEl.el.remove();
  document.removeEventListener('mousedown', pickerEl.outside, true);
  document.removeEventListener('keydown', pickerEl.key, true);
  pickerEl = null;
}

/** The composer's sticker button: a grid of the server's stickers; a click sends one. */
export function stickerButton() {
  const btn = h('button', {
    type: 'button', class: 'icon-btn sticker-btn', 'aria-label': 'Send a sticker', title: 'Stickers',
    'data-testid': 'sticker-picker-button', text: '🗒',
  });
  btn.addEventListener('click', () => {
    if (pickerEl) { closeStickerPicker(); return; }
    const s = store.server;
    const c = store.channel;
    if (!s || !c) return;
    const grid = h('div', { class: 'sticker-picker', role: 'dialog', 'aria-label': 'Pick a sticker', 'data-testid': 'sticker-picker' });
    if (!(s.stickers || []).length) grid.append(h('p', { class: 'muted small', text: 'This server has no stickers yet.' }));
    for (const st of s.stickers || []) {
      grid.append(h('button', {
        type: 'button', class: 'sticker-option', 'aria-label': `Send sticker ${st.name}`, title: st.name,
        'data-testid': 'sticker-option', 'data-sticker-id': st.id,
        onclick: async () => {
          closeStickerPicker();
          try {
            const m = await api.sendSticker(c.id, st.id, `st${Date.now()}${Math.random().toString(36).slice(2, 8)}`);
            if (m && m.id) { store.putMessage(m); invalidate(['messages']); }
          } catch (e) { toast(`Could not send the sticker: ${e.message}`, 'error'); }
        },
      }, h('img', { src: st.url, alt: st.name, loading: 'lazy' })));
    }
    document.body.append(grid);
    const r = btn.getBoundingClientRect();
    grid.style.left = `${Math.max(8, Math.min(window.innerWidth - 300, r.left))}px`;
    grid.style.top = `${Math.max(8, r.top - grid.offsetHeight - 6)}px`;
    const outside = (e) => { if (!grid.contains(e.target) && e.target !== btn) closeStickerPicker(); };
    const key = (e) => { if (e.key === 'Escape') { e.stopPropagation(); closeStickerPicker(); } };
    document.addEventListener('mousedown', outside, true);
    document.addEventListener('keydown', key, true);
    pickerEl = { el: grid, outside, key };
  });
  return btn;
}

// ------------------------------------------------------------------ server settings tabs

const tabListeners = new Set();

export function initEmoji() {
  // Specific listeners run before the store applies the dispatch ('*'): redraw after it.
  const redraw = () => queueMicrotask(() => { for (const fn of [...tabListeners]) fn(); });
  gateway.on('SERVER_EMOJIS_UPDATE', redraw);
  gateway.on('SERVER_STICKERS_UPDATE', redraw);
  addSettingsTab('emoji', 'Emoji', emojiTab);
  addSettingsTab('stickers', 'Stickers', stickerTab);
}

function errorLine() {
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'tab-error' });
  const show = (e) => { err.textContent = e ? (e.message || String(e)) : ''; err.hidden = !e; };
  return [err, show];
}

/** Checkboxes for the server's roles (not @everyone), with `chosen` ticked. */
function roleChoices(s, chosen, testid) {
  const box = h('fieldset', { class: 'role-choices', 'data-testid': testid },
    h('legend', { class: 'small', text: 'Only these roles may use it (none ticked: everyone)' }));
  for (const r of [...(s.roles || new Map()).values()].filter((r) => r.id !== s.id)) {
    const cb = h('input', { type: 'checkbox', value: r.id, 'data-testid': 'emoji-role', 'aria-label': r.name });
    cb.checked = chosen.includes(r.id);
    box.append(h('label', { class: 'small role-choice' }, cb, ` ${r.name}`));
  }
  box.values = () => [...box.querySelectorAll('input:checked')].map((i) => i.value);
  return box;
}

function emojiTab(s, view, panel) {
  const manage = store.can(PERM.MANAGE_EXPRESSIONS, s.id);
  const [err, showError] = errorLine();
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Emoji', 'data-testid': 'emoji-list' });
  const draw = () => {
    const cur = store.servers.get(s.id) || s;
    clear(list);
    const all = cur.emojis || [];
    if (!all.length) list.append(h('li', { class: 'muted', text: 'No custom emoji yet.' }));
    const stills = all.filter((e) => !e.animated).length;
    list.append(h('li', { class: 'muted small', text: `${stills} of 50 still, ${all.length - stills} of 50 animated` }));
    for (const e of all) {
      const name = h('input', { type: 'text', value: e.name, maxlength: '32', 'aria-label': `Name of :${e.name}:`, 'data-testid': 'emoji-rename', disabled: !manage });
      const roles = manage ? roleChoices(cur, e.roles || [], 'emoji-row-roles') : null;
      list.append(h('li', { class: 'admin-row emoji-row', 'data-testid': 'emoji-row', 'data-emoji-id': e.id, 'data-emoji-name': e.name },
        emojiImg(e.name, e.id, { big: true }), name,
        !manage && e.roles && e.roles.length ? h('span', { class: 'muted small', text: `${e.roles.length} role(s) only` }) : null,
        roles,
        manage ? h('button', { type: 'button', class: 'btn secondary small', text: 'Save', 'data-testid': 'emoji-save',
          onclick: async () => {
            showError(null);
            if (!NAME_RE.test(name.value)) { showError(new Error('A name is 2-32 letters, digits or underscores.')); return; }
            try { await api.updateEmoji(s.id, e.id, { name: name.value, roles: roles.values() }); } catch (x) { showError(x); }
          } }) : null,
        manage ? h('button', { type: 'button', class: 'btn secondary small', text: 'Delete', 'aria-label': `Delete :${e.name}:`, 'data-testid': 'emoji-delete',
          onclick: async () => {
            showError(null);
            try { await api.deleteEmoji(s.id, e.id); } catch (x) { showError(x); }
          } }) : null));
    }
  };
  tabListeners.clear();
  tabListeners.add(draw);
  draw();
  panel.append(err);
  if (manage) {
    const file = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/gif,image/webp', id: 'emoji-file', 'data-testid': 'emoji-file', required: true });
    const name = h('input', { type: 'text', maxlength: '32', id: 'emoji-name', 'data-testid': 'emoji-name', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9_]{2,32}' });
    const roles = roleChoices(s, [], 'emoji-upload-roles');
    file.addEventListener('change', () => {
      const f = file.files && file.files[0];
      if (f && !name.value) name.value = f.name.replace(/\.[^.]+$/, '').replace(/[^A-Za-z0-9_]/g, '_').slice(0, 32);
    });
    const submit = h('button', { type: 'submit', class: 'btn primary small', text: 'Upload', 'data-testid': 'emoji-upload' });
    const form = h('form', { class: 'emoji-upload', 'aria-label': 'Upload an emoji', 'data-testid': 'emoji-upload-form' },
      h('p', { class: 'muted small', text: 'PNG, JPEG, GIF (animated too) or WebP, at most 256 KiB; shown at 128×128.' }),
      h('label', { for: 'emoji-file', class: 'small', text: 'Image' }), file,
      h('label', { for: 'emoji-name', class: 'small', text: 'Name' }), name, roles, submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showError(null);
      const f = file.files && file.files[0];
      if (!f) { showError(new Error('Choose an image.')); return; }
      if (f.size > EMOJI_MAX) { showError(new Error('That image is larger than 256 KiB.')); return; }
      if (!NAME_RE.test(name.value)) { showError(new Error('A name is 2-32 letters, digits or underscores.')); return; }
      submit.disabled = true;
      try {
        await api.uploadEmoji(s.id, f, { name: name.value, roles: roles.values() });
        form.reset();
      } catch (x) { showError(x); } finally { submit.disabled = false; }
    });
    panel.append(form);
  }
  panel.append(list);
  return null;
}

function stickerTab(s, view, panel) {
  const manage = store.can(PERM.MANAGE_EXPRESSIONS, s.id);
  const [err, showError] = errorLine();
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Stickers', 'data-testid': 'sticker-list' });
  const draw = () => {
    const cur = store.servers.get(s.id) || s;
    clear(list);
    const all = cur.stickers || [];
    list.append(h('li', { class: 'muted small', text: `${all.length} of 30 stickers` }));
    for (const st of all) {
      const name = h('input', { type: 'text', value: st.name, maxlength: '30', 'aria-label': `Name of sticker ${st.name}`, 'data-testid': 'sticker-rename', disabled: !manage });
      const desc = h('input', { type: 'text', value: st.description || '', maxlength: '100', 'aria-label': `Description of sticker ${st.name}`, disabled: !manage });
      list.append(h('li', { class: 'admin-row sticker-row', 'data-testid': 'sticker-row', 'data-sticker-id': st.id },
        h('img', { class: 'sticker small', src: st.url, alt: st.name }), name, desc,
        manage ? h('button', { type: 'button', class: 'btn secondary small', text: 'Save',
          onclick: async () => {
            showError(null);
            try { await api.updateSticker(s.id, st.id, { name: name.value.trim(), description: desc.value }); } catch (x) { showError(x); }
          } }) : null,
        manage ? h('button', { type: 'button', class: 'btn secondary small', text: 'Delete', 'aria-label': `Delete sticker ${st.name}`, 'data-testid': 'sticker-delete',
          onclick: async () => {
            showError(null);
            try { await api.deleteSticker(s.id, st.id); } catch (x) { showError(x); }
          } }) : null));
    }
  };
  tabListeners.clear();
  tabListeners.add(draw);
  draw();
  panel.append(err);
  if (manage) {
    const file = h('input', { type: 'file', accept: 'image/png,image/apng,image/gif,image/webp', id: 'sticker-file', 'data-testid': 'sticker-file', required: true });
    const name = h('input', { type: 'text', maxlength: '30', id: 'sticker-name', 'data-testid': 'sticker-name', required: true, autocomplete: 'off' });
    const desc = h('input', { type: 'text', maxlength: '100', id: 'sticker-description', 'data-testid': 'sticker-description', autocomplete: 'off' });
    const submit = h('button', { type: 'submit', class: 'btn primary small', text: 'Upload', 'data-testid': 'sticker-upload' });
    const form = h('form', { class: 'sticker-upload', 'aria-label': 'Upload a sticker', 'data-testid': 'sticker-upload-form' },
      h('p', { class: 'muted small', text: 'PNG, APNG, GIF or WebP, at most 512 KiB; shown at up to 320×320.' }),
      h('label', { for: 'sticker-file', class: 'small', text: 'Image' }), file,
      h('label', { for: 'sticker-name', class: 'small', text: 'Name' }), name,
      h('label', { for: 'sticker-description', class: 'small', text: 'Description (optional)' }), desc, submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showError(null);
      const f = file.files && file.files[0];
      if (!f) { showError(new Error('Choose an image.')); return; }
      if (f.size > STICKER_MAX) { showError(new Error('That image is larger than 512 KiB.')); return; }
      submit.disabled = true;
      try {
        await api.uploadSticker(s.id, f, { name: name.value.trim(), description: desc.value.trim() || null });
        form.reset();
      } catch (x) { showError(x); } finally { submit.disabled = false; }
    });
    panel.append(form);
  }
  panel.append(list);
  return null;
}
