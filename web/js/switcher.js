// Ctrl+K (⌘K on a Mac): the quick switcher. Type part of a channel, server or person's name;
// ↑/↓ choose, Enter goes there, Escape closes. Lists the text and voice channels of every server
// and the DMs and group DMs.

import { h, clear } from './dom.js';
import { sortChannels } from './state.js';
import { dmLabel, HOME } from './inbox.js';

let ctx = null;
let openNow = null;

export function initSwitcher(deps) { ctx = deps; }

function entries() {
  const { store } = ctx;
  const out = [];
  for (const c of store.privateChannels.values()) {
    const label = dmLabel(store, c);
    out.push({ kind: c.type === 'dm' ? 'dm' : 'group', id: c.id, serverId: HOME, label, detail: c.type === 'dm' ? 'Direct message' : 'Group DM', glyph: '@' });
  }
  for (const s of store.servers.values()) {
    for (const c of sortChannels([...s.channels.values()])) {
      if (c.type === 'category') continue;
      const voice = c.type !== 'text';
      out.push({ kind: voice ? 'voice' : 'text', id: c.id, serverId: s.id, channel: c, label: c.name, detail: s.name, glyph: voice ? '🔊' : '#' });
    }
  }
  return out;
}

function score(e, q) {
  if (!q) return 1;
  const name = e.label.toLowerCase();
  if (name.startsWith(q)) return 3;
  if (name.split(/[\s_-]+/).some((w) => w.startsWith(q))) return 2;
  if (name.includes(q) || e.detail.toLowerCase().includes(q)) return 1;
  return 0;
}

export function openSwitcher() {
  if (openNow) { openNow.input.focus(); return; }
  const { store } = ctx;
  const input = h('input', {
    type: 'text', class: 'switcher-input', placeholder: 'Where would you like to go?', 'aria-label': 'Channel or conversation',
    role: 'combobox', 'aria-expanded': 'true', 'aria-controls': 'switcher-list', 'aria-autocomplete': 'list', 'data-testid': 'switcher-input',
    autocomplete: 'off', spellcheck: 'false',
  });
  const list = h('ul', { class: 'switcher-list', id: 'switcher-list', role: 'listbox', 'aria-label': 'Results', 'data-testid': 'switcher-results' });
  const dlg = h('dialog', { class: 'dialog quick-switcher', 'aria-label': 'Quick switcher', 'data-testid': 'quick-switcher' },
    h('div', { class: 'switcher-body' }, input, list,
      h('p', { class: 'muted small switcher-hint', text: '↑ ↓ to choose · Enter to go · Esc to close' })));
  let results = [];
  let active = 0;
  const recent = [store.currentChannelId];
  const render = () => {
    const q = input.value.trim().toLowerCase().replace(/^[#@]/, '');
    results = entries()
      .map((e) => ({ e, s: score(e, q) }))
      .filter((x) => x.s > 0 && !(q === '' && recent.includes(x.e.id)))
      .sort((a, b) => b.s - a.s)
      .slice(0, 12)
      .map((x) => x.e);
    if (active >= results.length) active = 0;
    clear(list);
    results.forEach((e, i) => {
      const li = h('li', {
        id: `switcher-opt-${i}`, role: 'option', class: `switcher-item${i === active ? ' active' : ''}`, 'aria-selected': String(i === active),
        'data-testid': 'switcher-option', 'data-kind': e.kind, 'data-id': e.id,
      }, h('span', { class: 'switcher-glyph', 'aria-hidden': 'true', text: e.glyph }),
      h('span', { class: 'switcher-label', text: e.label }), h('span', { class: 'muted small switcher-detail', text: e.detail }));
      li.addEventListener('mousedown', (ev) => ev.preventDefault());
      li.addEventListener('click', () => go(e));
      list.append(li);
    });
    if (!results.length) list.append(h('li', { class: 'muted small switcher-empty', role: 'presentation', text: 'Nothing matches. Try another name.' }));
    if (results.length) input.setAttribute('aria-activedescendant', `switcher-opt-${active}`);
    else input.removeAttribute('aria-activedescendant');
  };
  const close = () => dlg.close();
  const go = (e) => {
    close();
    if (e.kind === 'voice') { ctx.joinVoice(e.channel); return; }
    if (store.currentServerId !== e.serverId) ctx.selectServer(e.serverId);
    ctx.selectChannel(e.id);
    queueMicrotask(() => document.querySelector('[data-testid="composer"]')?.focus());
  };
  input.addEventListener('input', () => { active = 0; render(); });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown' && results.length) { ev.preventDefault(); active = (active + 1) % results.length; render(); }
    else if (ev.key === 'ArrowUp' && results.length) { ev.preventDefault(); active = (active - 1 + results.length) % results.length; render(); }
    else if (ev.key === 'Enter') { ev.preventDefault(); if (results[active]) go(results[active]); }
  });
  dlg.addEventListener('click', (ev) => { if (ev.target === dlg) close(); });
  dlg.addEventListener('close', () => { dlg.remove(); openNow = null; });
  document.body.append(dlg);
  openNow = { dlg, input };
  render();
  dlg.showModal();
  input.focus();
}
