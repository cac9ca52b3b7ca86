// Integrations (docs/bots.md): the server settings' Integrations page, where moderators make
// incoming webhooks for a channel and add bot accounts, and see each secret once.
//
// A secret (webhook URL, bot token) is shown once, right after it is made, with a copy button:
// the server keeps only its hash, as a password.

import { h, add, clear, field } from './dom.js';
import { PERM, PERMISSIONS } from './state.js';
import { addSettingsTab } from './community.js';

let api = null;
let store = null;

export function initIntegrations(ctx) {
  ({ api, store } = ctx);
  addSettingsTab('integrations', 'Integrations', integrationsTab);
}

function errorLine() { return h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'tab-error' }); }
function showError(el, e) { el.textContent = e ? (e.message || String(e)) : ''; el.hidden = !e; }

const textChannels = (s) => [...s.channels.values()].filter((c) => c.type === 'text').sort((a, b) => (a.position - b.position) || (a.id < b.id ? -1 : 1));

/** A secret shown once, selectable, with a copy button. */
function secretBox(label, value, testid) {
  const input = h('input', { type: 'text', readonly: true, value, class: 'secret', 'aria-label': label, 'data-testid': testid });
  const copy = h('button', {
    type: 'button', class: 'btn secondary small', text: 'Copy',
    onclick: async () => {
      input.select();
      try { await navigator.clipboard.writeText(value); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy'; }
    },
  });
  return h('div', { class: 'secret-box', role: 'status' },
    h('p', { class: 'small', text: `${label} — shown only now; keep it secret. Anyone who has it can post as this integration.` }),
    h('div', { class: 'row' }, input, copy));
}

function integrationsTab(s, view, panel) {
  const webhooks = store.can(PERM.MANAGE_WEBHOOKS, s.id);
  const bots = store.can(PERM.MANAGE_SERVER, s.id);
  if (!webhooks && !bots) {
    panel.append(h('p', { class: 'muted', text: 'You need the Manage Webhooks or Manage Server permission for this page.' }));
    return null;
  }
  if (webhooks) panel.append(webhooksSection(s));
  if (bots) panel.append(botsSection(s));
  return null;
}

// ------------------------------------------------------------------ webhooks

function webhooksSection(s) {
  const err = errorLine();
  const channel = h('select', { 'aria-label': 'Webhook channel', 'data-testid': 'webhook-channel' },
    textChannels(s).map((c) => h('option', { value: c.id, text: `#${c.name}` })));
  const name = field({ label: 'Name', name: 'webhook_name', maxlength: 64, placeholder: 'CI', testid: 'webhook-name' });
  const secret = h('div', { 'data-testid': 'webhook-secret' });
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Webhooks', 'data-testid': 'webhook-list' });
  const refresh = async () => {
    showError(err, null);
    try {
      const hooks = await api.get(`/channels/${channel.value}/webhooks`);
      clear(list);
      if (!hooks.length) list.append(h('li', { class: 'muted', text: 'No webhooks in this channel.' }));
      for (const w of hooks) {
        list.append(h('li', { 'data-testid': 'webhook-item', 'data-webhook-id': w.id },
          h('strong', { text: w.name }), ' ',
          h('span', { class: 'muted small', text: `made ${new Date(w.created_at).toLocaleDateString()}` }), ' ',
          h('button', {
            type: 'button', class: 'btn danger small', text: 'Delete', 'aria-label': `Delete webhook ${w.name}`, 'data-testid': 'webhook-delete',
            onclick: async () => {
              showError(err, null);
              try { await api.del(`/webhooks/${w.id}`); await refresh(); } catch (e) { showError(err, e); }
            },
          })));
      }
    } catch (e) { showError(err, e); }
  };
  const create = h('button', {
    type: 'button', class: 'btn primary small', text: 'Create webhook', 'data-testid': 'webhook-create',
    onclick: async () => {
      showError(err, null);
      clear(secret);
      try {
        const w = await api.post(`/channels/${channel.value}/webhooks`, { name: name.input.value.trim() });
        const url = new URL(`/api/v1/webhooks/${w.id}/${w.token}`, window.location.origin).href;
        secret.append(secretBox(`Webhook URL for ${w.name}`, url, 'webhook-url'));
        name.input.value = '';
        await refresh();
      } catch (e) { showError(err, e); }
    },
  });
  channel.addEventListener('change', () => { clear(secret); refresh(); });
  if (channel.options.length) refresh();
  return h('section', { 'aria-label': 'Webhooks' },
    h('h3', { text: 'Webhooks' }),
    h('p', { class: 'muted small', text: 'A webhook posts into one channel from a program (CI, monitoring, feeds) with a secret URL; no account needed.' }),
    err, h('label', { class: 'field' }, 'Channel ', channel), name.el, h('div', { class: 'row' }, create), secret, list);
}

// ------------------------------------------------------------------ bots

// What a new bot usually needs; anything else can be given later through its role.
const BOT_DEFAULTS = new Set(['VIEW_CHANNEL', 'SEND_MESSAGES', 'READ_MESSAGE_HISTORY', 'ADD_REACTIONS', 'EMBED_LINKS']);

function botsSection(s) {
  const err = errorLine();
  const username = field({ label: 'Bot username', name: 'bot_username', maxlength: 32, placeholder: 'dicebot', testid: 'bot-username' });
  // Only what the caller holds may be given (the server refuses the rest).
  const grantable = PERMISSIONS.filter((p) => p.name !== 'ADMINISTRATOR' && store.can(p.value, s.id));
  const boxes = grantable.map((p) => {
    const box = h('input', { type: 'checkbox', value: p.name, checked: BOT_DEFAULTS.has(p.name), 'data-testid': `bot-perm-${p.name}` });
    return [p, box, h('label', { class: 'perm-choice' }, box, ` ${p.label}`)];
  });
  const secret = h('div', { 'data-testid': 'bot-secret' });
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Bots', 'data-testid': 'bot-list' });
  const showToken = (b) => { clear(secret); secret.append(secretBox(`Token for ${b.user.username}`, b.token, 'bot-token')); };
  const refresh = async () => {
    try {
      const bots = await api.get(`/servers/${s.id}/bots`);
      clear(list);
      if (!bots.length) list.append(h('li', { class: 'muted', text: 'No bots in this server.' }));
      for (const b of bots) {
        list.append(h('li', { 'data-testid': 'bot-item', 'data-bot-id': b.user.id },
          h('strong', { text: b.user.username }), ' ', h('span', { class: 'bot-tag', text: 'BOT' }), ' ',
          h('button', {
            type: 'button', class: 'btn secondary small', text: 'Reset token', 'aria-label': `Reset the token of ${b.user.username}`, 'data-testid': 'bot-reset',
            onclick: async () => {
              showError(err, null);
              try { showToken(await api.post(`/servers/${s.id}/bots/${b.user.id}/reset-token`)); } catch (e) { showError(err, e); }
            },
          }),
          h('button', {
            type: 'button', class: 'btn danger small', text: 'Remove', 'aria-label': `Remove ${b.user.username}`, 'data-testid': 'bot-remove',
            onclick: async () => {
              showError(err, null);
              try { await api.kick(s.id, b.user.id, 'bot removed'); await refresh(); } catch (e) { showError(err, e); }
            },
          })));
      }
    } catch (e) { showError(err, e); }
  };
  const create = h('button', {
    type: 'button', class: 'btn primary small', text: 'Add bot', 'data-testid': 'bot-create',
    onclick: async () => {
      showError(err, null);
      clear(secret);
      const permissions = boxes.reduce((acc, [p, box]) => (box.checked ? acc | p.value : acc), 0n);
      try {
        const b = await api.post(`/servers/${s.id}/bots`, { username: username.input.value.trim(), permissions: permissions.toString() });
        showToken(b);
        username.input.value = '';
        await refresh();
      } catch (e) { showError(err, e); }
    },
  });
  refresh();
  return add(h('section', { 'aria-label': 'Bots' }),
    h('h3', { text: 'Bots' }),
    h('p', { class: 'muted small', text: 'A bot logs in with its token (Authorization: Bot <token>), joins this server with a role of its own holding the permissions chosen here, and can register slash commands. See docs/bots.md.' }),
    err, username.el,
    h('fieldset', { class: 'perm-choices' }, h('legend', { text: 'Permissions' }), boxes.map(([, , label]) => label)),
    h('div', { class: 'row' }, create), secret, list);
}
