// Slash commands in the composer (docs/bots.md).
//
// - `attachCommandAutocomplete(textarea)`: typing `/` at the start lists the server's commands
//   (from its bots); after a command, its options (`name:`), with their types. ↑/↓ move, Enter
//   or Tab picks, Escape closes.
// - `commandFor(text)` + `runCommand`: on send, `/name opt:value …` naming a command of this server becomes an
//   interaction (`POST /channels/{id}/interactions`) instead of a message. The bot's answer is
//   an ordinary message; meanwhile a status line says the bot is thinking, and when the bot
//   does not answer in time (`INTERACTION_FAILED`) the composer says so.

import { h, clear, toast } from './dom.js';

let ctx = null;  // {api, store, gateway, showError(text)}
const byServer = new Map();  // server id -> Command[] (null while loading)
const pending = new Map();  // interaction id -> {channelId, botId, command, botName}
const loaded = new Set();  // callbacks for when a server's commands arrive
let statusEl = null;
const MAX_ITEMS = 10;

export function initCommands(c) {
  ctx = c;
  const g = c.gateway;
  g.on('APPLICATION_COMMANDS_UPDATE', (d) => { if (d) byServer.delete(d.server_id); });
  g.on('READY', () => { byServer.clear(); pending.clear(); renderStatus(); });
  // The bot's answer is its message in the channel: the interaction is over.
  g.on('MESSAGE_CREATE', (m) => {
    if (!m || !m.author) return;
    for (const [id, p] of pending) {
      if (p.channelId === m.channel_id && p.botId === m.author.id) pending.delete(id);
    }
    renderStatus();
  });
  g.on('INTERACTION_FAILED', (d) => {
    if (!d) return;
    pending.delete(d.id);
    renderStatus();
    // Under the composer of that channel; elsewhere as a notice.
    if (String(ctx.store.currentChannelId) === String(d.channel_id)) ctx.showError(`/${d.command}: ${d.message}`);
    else toast(`/${d.command}: ${d.message}`, 'error');
  });
}

/** The current server's commands, fetched once and refetched after a change; [] meanwhile. */
function commandsHere() {
  const c = ctx.store.channel;
  const sid = c && c.server_id;
  if (!sid) return [];
  if (!byServer.has(sid)) {
    byServer.set(sid, null);
    ctx.api.get(`/servers/${sid}/commands`).then((list) => {
      byServer.set(sid, list || []);
      for (const fn of [...loaded]) fn();
    }, () => byServer.delete(sid));
  }
  return byServer.get(sid) || [];
}

/** Loads the current server's commands ahead of the first `/`. */
export function prefetchCommands() { if (ctx) commandsHere(); }

function botName(botId) {
  const u = ctx.store.userById(botId);
  return u ? ctx.store.displayName(botId, u) : 'a bot';
}

/** `/name rest` at the start of the text: the command (if this server has it) and the rest. */
function parseCommandLine(text) {
  const m = /^\/([a-z0-9_-]{1,32})(?:\s+([\s\S]*))?$/.exec(text.trim());
  if (!m) return null;
  const command = commandsHere().find((c) => c.name === m[1]);
  return command ? { command, rest: m[2] || '' } : null;
}

/** `opt:value` pairs for the command's options; a command whose first option is text may take
 *  the whole rest as that option without naming it. */
function parseOptions(command, rest) {
  const names = command.options.map((o) => o.name);
  const marks = [];
  const re = /(^|\s)([a-z0-9_-]{1,32}):/g;
  for (let m; (m = re.exec(rest));) {
    if (names.includes(m[2])) marks.push({ name: m[2], at: m.index + m[1].length, value: m.index + m[0].length });
  }
  const raw = new Map();
  if (!marks.length && rest.trim() && command.options.length) raw.set(command.options[0].name, rest.trim());
  marks.forEach((mk, i) => raw.set(mk.name, rest.slice(mk.value, i + 1 < marks.length ? marks[i + 1].at : undefined).trim()));
  const options = [];
  for (const o of command.options) {
    const v = raw.get(o.name);
    if (v === undefined || v === '') {
      if (o.required) throw new Error(`/${command.name} needs ${o.name}`);
      continue;
    }
    options.push({ name: o.name, value: convert(o, v) });
  }
  return options;
}

function convert(o, v) {
  switch (o.type) {
    case 'integer': {
      if (!/^-?\d+$/.test(v)) throw new Error(`${o.name} must be a whole number`);
      return Number(v);
    }
    case 'boolean': {
      if (!/^(true|false|yes|no)$/i.test(v)) throw new Error(`${o.name} must be true or false`);
      return /^(true|yes)$/i.test(v);
    }
    case 'user': {
      const id = /^<@(\d+)>$/.exec(v)?.[1] || memberByName(v.replace(/^@/, ''));
      if (!id) throw new Error(`${o.name}: no member named ${v}`);
      return id;
    }
    case 'channel': {
      const id = /^<#(\d+)>$/.exec(v)?.[1];
      if (!id) throw new Error(`${o.name} must be a channel (type # to pick one)`);
      return id;
    }
    default: return v;
  }
}

function memberByName(name) {
  const s = ctx.store.server;
  if (!s) return null;
  const k = name.toLowerCase();
  const found = [...s.members.values()].filter((m) => m && m.user
    && [m.user.username, m.user.display_name, m.nickname].some((n) => n && n.toLowerCase() === k));
  return found.length === 1 ? found[0].user.id : null;
}

/**
 * The interaction `text` asks for when it names a command of this server, or null for anything
 * else (it is then an ordinary message). Throws with a readable message for a command used
 * wrongly.
 */
export function commandFor(text) {
  const parsed = parseCommandLine(text);
  if (!parsed) return null;
  return { command: parsed.command, options: parseOptions(parsed.command, parsed.rest) };
}

/** Sends an interaction from `commandFor`; throws with the server's refusal. */
export async function runCommand({ command, options }) {
  const channelId = ctx.store.currentChannelId;
  // Waiting starts before the request: the bot's answer may arrive before our own response.
  const key = `sending-${++seq}`;
  pending.set(key, { channelId, botId: command.bot_id, command: command.name, botName: botName(command.bot_id) });
  renderStatus();
  try {
    const r = await ctx.api.post(`/channels/${channelId}/interactions`, { command_id: command.id, options });
    const p = pending.get(key);
    if (p) pending.set(r.id, p);
  } finally {
    pending.delete(key);
    renderStatus();
  }
}

/** "dicebot is thinking…" under the composer while one of this channel's commands waits. */
export function commandStatus() {
  statusEl = h('div', { class: 'interaction-status muted small', 'data-testid': 'interaction-status', 'aria-live': 'polite', hidden: true });
  return statusEl;
}

export function renderStatus() {
  if (!statusEl || !ctx) return;
  const here = [...pending.values()].filter((p) => String(p.channelId) === String(ctx.store.currentChannelId));
  statusEl.hidden = !here.length;
  statusEl.textContent = here.length ? `${here[0].botName} is thinking about /${here[0].command}…` : '';
}

// ------------------------------------------------------------------ the popup

function suggestions(value, caret) {
  const before = value.slice(0, caret);
  const start = /^\/([a-z0-9_-]{0,32})$/.exec(before);
  if (start) {
    return commandsHere().filter((c) => c.name.startsWith(start[1])).slice(0, MAX_ITEMS).map((c) => ({
      kind: 'command', id: c.id, label: `/${c.name}`, detail: `${c.description} · ${botName(c.bot_id)}`,
      from: 0, to: caret, insert: `/${c.name} ${c.options.length ? `${c.options[0].name}:` : ''}`,
    }));
  }
  const inCommand = /^\/([a-z0-9_-]{1,32})\s/.exec(before);
  if (!inCommand) return [];
  const command = commandsHere().find((c) => c.name === inCommand[1]);
  if (!command) return [];
  const word = /(^|\s)([a-z0-9_-]*)$/.exec(before);
  if (!word) return [];
  const used = new Set([...before.matchAll(/(?:^|\s)([a-z0-9_-]{1,32}):/g)].map((m) => m[1]));
  return command.options.filter((o) => !used.has(o.name) && o.name.startsWith(word[2])).map((o) => ({
    kind: 'option', id: o.name, label: `${o.name}:`,
    detail: `${o.type}${o.required ? ' · required' : ''} · ${o.description}`,
    from: caret - word[2].length, to: caret, insert: `${o.name}:`,
  }));
}

let seq = 0;

/** Adds the command list to the composer. Attach it before the composer's own key handler. */
export function attachCommandAutocomplete(input, { container } = {}) {
  const listId = `command-list-${++seq}`;
  const list = h('ul', { class: 'mention-list', id: listId, role: 'listbox', 'aria-label': 'Commands', 'data-testid': 'command-autocomplete', hidden: true });
  (container || input.parentElement).append(list);
  let items = [];
  let active = 0;

  const close = () => { list.hidden = true; items = []; input.removeAttribute('aria-activedescendant'); };
  const render = () => {
    clear(list);
    if (!items.length) { close(); return; }
    list.hidden = false;
    input.setAttribute('aria-controls', listId);
    list.append(h('li', { class: 'mention-head', role: 'presentation', text: items[0].kind === 'command' ? 'Commands' : 'Options' }));
    items.forEach((it, i) => {
      const li = h('li', {
        id: `${listId}-${i}`, role: 'option', class: `mention-item${i === active ? ' active' : ''}`, 'aria-selected': String(i === active),
        'data-testid': 'command-option', 'data-kind': it.kind, 'data-id': it.id,
      },
      h('span', { class: 'mention-glyph', 'aria-hidden': 'true', text: it.kind === 'command' ? '/' : '·' }),
      h('span', { class: 'mention-label', text: it.label }),
      h('span', { class: 'mention-detail muted small', text: it.detail }));
      li.addEventListener('mousedown', (e) => e.preventDefault());
      li.addEventListener('click', () => pick(i));
      list.append(li);
    });
    input.setAttribute('aria-activedescendant', `${listId}-${active}`);
  };
  const update = () => {
    if (input.selectionStart !== input.selectionEnd || !input.value.startsWith('/')) { close(); return; }
    const next = suggestions(input.value, input.selectionStart);
    if (next.length !== items.length || next.some((x, i) => x.id !== items[i].id)) active = 0;
    items = next;
    render();
  };
  const pick = (i) => {
    const it = items[i];
    if (!it) return;
    const v = input.value;
    input.value = v.slice(0, it.from) + it.insert + v.slice(it.to);
    const caret = it.from + it.insert.length;
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
  input.addEventListener('focus', () => prefetchCommands());
  // The list may be asked for before the commands arrive: show it once they do.
  loaded.add(() => { if (document.activeElement === input) update(); });
  input.addEventListener('blur', () => setTimeout(close, 0));
  return { close };
}
