// Community features: server settings (roles, members, invites, bans, audit log), channel
// permission overwrites, moderation (kick, ban, timeout), reactions and pins.
//
// Everything user-provided (role names, colours, reasons, names) goes through textContent or a
// validated #rrggbb colour; nothing is parsed as HTML.

import { reactionFace, reactionName, customReactionButtons } from './emoji.js';
import { h, clear, avatar, openDialog, field, toast, readableOn } from './dom.js';
import { PERMISSIONS, PERM, perms, roleColor, cmpId } from './state.js';
import { renderMarkdown } from './markdown.js';
import { Op } from './gateway.js';

let api = null;
let store = null;
let gateway = null;
let invalidate = () => {};

export function initCommunity(ctx) {
  ({ api, store, gateway, invalidate } = ctx);
  // A new gateway session follows nothing yet (a RESUME keeps what the old one followed).
  gateway.on('READY', () => { followed = null; });
}

// Names of users seen anywhere (members, authors, bans), so a banned or departed user still has one.
const knownUsers = new Map();
export function rememberUser(u) { if (u && u.id) knownUsers.set(u.id, u); }
function userName(userId, serverId) {
  const u = store.userById(userId) || knownUsers.get(userId);
  if (u) return store.displayName(userId, u, serverId);
  return `user ${userId}`;
}

// Open views refresh themselves on store topics.
const listeners = new Set();
export function onTopics(topics) { for (const fn of [...listeners]) fn(topics); }

export const REACTION_PALETTE = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🔥', '👀'];

// =====================================================================================
// Members of a large server: READY carries only our own member object and those in voice, so the
// list is fetched (pages of 1000 by user id) when the server is opened, then kept live by
// MEMBER_* events. What an event already told us wins over the fetched copy.

// The server reports a large server's presence changes only to sessions that follow it (op 17):
// we follow the one on screen, so its member list stays live, and no other.
let followed = null;
export function followPresences(serverId) {
  const s = serverId && store.servers.get(serverId);
  const want = s && s.large ? serverId : null;
  if (want === followed) return;
  if (gateway.send(Op.PRESENCE_SUBSCRIBE, { server_ids: want ? [want] : [] })) followed = want;
}

const membersLoading = new Set();
export async function ensureMembers(serverId) {
  const s = serverId && store.servers.get(serverId);
  if (!s || s.membersLoaded || membersLoading.has(serverId)) return;
  membersLoading.add(serverId);
  try {
    const presences = api.presences(serverId).catch(() => []);
    const fetched = [];
    let after = null;
    for (;;) {
      const page = await api.members(serverId, { after, limit: 1000 });
      fetched.push(...page);
      if (page.length < 1000) break;
      after = page[page.length - 1].user.id;
    }
    const cur = store.servers.get(serverId);
    if (!cur) return;
    for (const m of fetched) if (m && m.user && !cur.members.has(m.user.id)) cur.members.set(m.user.id, m);
    for (const p of await presences) if (!store.presences.has(p.user_id)) store.presences.set(p.user_id, p.status);
    cur.membersLoaded = true;
    invalidate(['members', 'messages', 'header', 'community']);
  } catch { /* not fatal: the list stays partial; the next open retries */ } finally {
    membersLoading.delete(serverId);
  }
}

// =====================================================================================
// Roles: loaded once per server, then kept live by ROLE_* events.

const rolesLoading = new Set();
export async function ensureRoles(serverId) {
  const s = serverId && store.servers.get(serverId);
  if (!s || s.rolesLoaded || rolesLoading.has(serverId)) return;
  rolesLoading.add(serverId);
  try {
    const list = await api.roles(serverId);
    const cur = store.servers.get(serverId);
    if (cur) store.setRoles(cur, list);
    invalidate(['members', 'messages', 'header', 'community']);
  } catch { /* not fatal: role colours and permission hints just stay off */ } finally {
    rolesLoading.delete(serverId);
  }
}

const EVERYONE = '@everyone';
function roleName(s, role) { return role.id === s.id ? EVERYONE : role.name; }

function roleDot(role) {
  const c = roleColor(role);
  const dot = h('span', { class: 'role-dot', 'aria-hidden': 'true' });
  if (c) dot.style.background = c;
  return dot;
}

/** Whether the server settings button is worth showing to me. */
export function canOpenServerSettings(serverId) {
  const any = PERM.MANAGE_ROLES | PERM.KICK_MEMBERS | PERM.BAN_MEMBERS | PERM.MANAGE_SERVER |
    PERM.VIEW_AUDIT_LOG | PERM.MODERATE_MEMBERS | PERM.MANAGE_MESSAGES | PERM.ADMINISTRATOR;
  return (store.myPermissions(serverId) & any) !== 0n;
}

// =====================================================================================
// Server settings dialog

const TABS = [['roles', 'Roles'], ['members', 'Members'], ['invites', 'Invites'], ['bans', 'Bans'], ['audit', 'Audit log']];

// Tabs other modules add (the soundboard): [id, label, renderer(server, view, panel)].
const extraTabs = [];
export function addSettingsTab(id, label, renderer) { extraTabs.push([id, label, renderer]); }

export function serverSettingsDialog(initialTab = 'roles') {
  const s = store.server;
  if (!s) return Promise.resolve();
  ensureRoles(s.id);
  const view = { tab: initialTab, selectedRole: null, auditAction: '' };
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Server settings sections' });
  const panel = h('div', { class: 'tab-panel', role: 'tabpanel', 'data-testid': 'settings-panel' });
  const renderers = { roles: rolesTab, members: membersTab, invites: invitesTab, bans: bansTab, audit: auditTab };
  for (const [id, , fn] of extraTabs) renderers[id] = fn;
  const tabs = [...TABS, ...extraTabs.map(([id, label]) => [id, label])];
  let refresh = null;  // the current tab's live-refresh hook
  const show = (tab) => {
    view.tab = tab;
    clear(tablist);
    for (const [id, label] of tabs) {
      tablist.append(h('button', {
        type: 'button', role: 'tab', class: `tab${id === tab ? ' active' : ''}`, id: `tab-${id}`,
        'aria-selected': String(id === tab), 'data-testid': `tab-${id}`, text: label,
        onclick: () => show(id),
      }));
    }
    panel.setAttribute('aria-labelledby', `tab-${tab}`);
    clear(panel);
    refresh = renderers[tab](s, view, panel) || null;
  };
  const listener = (topics) => {
    if (!store.servers.has(s.id)) { document.querySelector('[data-testid="server-settings-dialog"]')?.close(); return; }
    if (refresh) refresh(topics);
  };
  listeners.add(listener);
  show(initialTab);
  return openDialog({
    title: `${s.name} — Server settings`, testid: 'server-settings-dialog', wide: true,
    content: [tablist, panel], actions: [{ label: 'Close' }],
  }).finally(() => listeners.delete(listener));
}

function errorLine() { return h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'tab-error' }); }
function showError(el, e) { el.textContent = e ? (e.message || String(e)) : ''; el.hidden = !e; }
function focusedIn(el) { return document.activeElement && el.contains(document.activeElement) && /INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName); }

// ------------------------------------------------------------------ roles tab

function rolesTab(s, view, panel) {
  const canManage = store.can(PERM.MANAGE_ROLES, s.id);
  const err = errorLine();
  const list = h('ul', { class: 'role-list', 'aria-label': 'Roles', 'data-testid': 'role-list' });
  const editor = h('div', { class: 'role-editor', 'data-testid': 'role-editor' });
  const newName = h('input', { type: 'text', 'aria-label': 'New role name', placeholder: 'New role name', maxlength: 100, 'data-testid': 'new-role-name' });
  const create = h('button', { type: 'button', class: 'btn primary small', text: 'Create role', 'data-testid': 'create-role', disabled: !canManage });
  create.addEventListener('click', async () => {
    showError(err, null);
    create.disabled = true;
    try {
      const role = await api.createRole(s.id, { name: newName.value.trim() || 'new role' });
      store.apply('ROLE_CREATE', { server_id: s.id, role });
      newName.value = '';
      view.selectedRole = role.id;
      renderList(); renderEditor();
    } catch (e) { showError(err, e); } finally { create.disabled = false; }
  });
  newName.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); create.click(); } });

  const renderList = () => {
    clear(list);
    const roles = store.sortedRoles(s.id).reverse();  // highest first, @everyone last
    if (!roles.length) list.append(h('li', { class: 'muted', text: s.rolesLoaded ? 'No roles.' : 'Loading…' }));
    for (const r of roles) {
      const selected = r.id === view.selectedRole;
      list.append(h('li', {},
        h('button', {
          type: 'button', class: `role-item${selected ? ' active' : ''}`, 'aria-pressed': String(selected),
          'data-testid': 'role-item', 'data-role-id': r.id,
          onclick: () => { view.selectedRole = r.id; renderList(); renderEditor(); },
        }, roleDot(r), h('span', { class: 'role-name', text: roleName(s, r) }))));
    }
  };

  const renderEditor = () => {
    clear(editor);
    const r = view.selectedRole && s.roles.get(view.selectedRole);
    if (!r) { editor.append(h('p', { class: 'muted', text: 'Select a role to edit it, or create one.' })); return; }
    const isEveryone = r.id === s.id;
    const name = field({ label: 'Role name', name: 'role_name', value: roleName(s, r), maxlength: 100 });
    name.input.disabled = isEveryone || !canManage;
    const hex = roleColor(r);
    const color = h('input', { type: 'color', 'aria-label': 'Role colour', 'data-testid': 'role-color', disabled: isEveryone || !canManage });
    color.value = hex || '#99aab5';
    const noColor = h('input', { type: 'checkbox', 'aria-label': 'No colour', disabled: isEveryone || !canManage });
    noColor.checked = !hex;
    color.addEventListener('input', () => { noColor.checked = false; });
    const hoist = h('input', { type: 'checkbox', 'aria-label': 'Show members separately', disabled: isEveryone || !canManage });
    hoist.checked = !!r.hoist;
    const bits = perms(r.permissions);
    const boxes = PERMISSIONS.map((p) => {
      const cb = h('input', { type: 'checkbox', 'data-perm': p.name, disabled: !canManage });
      cb.checked = (bits & p.value) !== 0n;
      return { p, cb, el: h('label', { class: 'perm-check', title: p.name }, cb, h('span', { text: p.label })) };
    });
    const save = h('button', { type: 'button', class: 'btn primary small', text: 'Save role', 'data-testid': 'save-role', disabled: !canManage });
    const del = isEveryone ? null : h('button', { type: 'button', class: 'btn danger small', text: 'Delete role', 'data-testid': 'delete-role', disabled: !canManage });
    const status = h('span', { class: 'muted small', role: 'status' });
    save.addEventListener('click', async () => {
      showError(err, null);
      let p = 0n;
      for (const b of boxes) if (b.cb.checked) p |= b.p.value;
      const patch = { permissions: p.toString() };
      if (!isEveryone) {
        const n = name.input.value.trim();
        if (n && n !== r.name) patch.name = n;
        const c = noColor.checked ? 0 : parseInt(color.value.slice(1), 16);
        if (c !== (Number(r.color) || 0)) patch.color = c;
        if (hoist.checked !== !!r.hoist) patch.hoist = hoist.checked;
      }
      save.disabled = true;
      try {
        const updated = await api.updateRole(s.id, r.id, patch);
        store.apply('ROLE_UPDATE', { server_id: s.id, role: updated });
        invalidate(['members', 'messages', 'header', 'channels']);
        renderList();
        status.textContent = 'Saved.';
      } catch (e) { showError(err, e); } finally { save.disabled = false; }
    });
    if (del) {
      del.addEventListener('click', async () => {
        showError(err, null);
        try {
          await api.deleteRole(s.id, r.id);
          store.apply('ROLE_DELETE', { server_id: s.id, role_id: r.id });
          invalidate(['members', 'messages', 'header']);
          view.selectedRole = null;
          renderList(); renderEditor();
        } catch (e) { showError(err, e); }
      });
    }
    editor.append(
      name.el,
      isEveryone ? h('p', { class: 'muted small', text: 'Every member has @everyone\'s permissions.' })
        : h('div', { class: 'row' },
          h('label', { class: 'small inline' }, 'Colour ', color),
          h('label', { class: 'small inline' }, noColor, ' No colour'),
          h('label', { class: 'small inline' }, hoist, ' Show separately')),
      h('fieldset', { class: 'perm-grid', 'aria-label': 'Permissions' }, h('legend', { text: 'Permissions' }), boxes.map((b) => b.el)),
      h('div', { class: 'row' }, save, del, status));
  };

  if (!view.selectedRole) {
    const top = store.sortedRoles(s.id).reverse()[0];
    view.selectedRole = top ? top.id : null;
  }
  renderList(); renderEditor();
  panel.append(err,
    canManage ? h('div', { class: 'row' }, newName, create) : h('p', { class: 'muted small', text: 'You need Manage roles to change roles.' }),
    h('div', { class: 'roles-layout' }, list, editor));
  return (topics) => {
    if (!topics.has('community')) return;
    renderList();
    if (!focusedIn(editor) && (!view.selectedRole || !s.roles.has(view.selectedRole) || !editor.querySelector('input'))) renderEditor();
  };
}

// ------------------------------------------------------------------ members tab

function membersTab(s, view, panel) {
  const err = errorLine();
  const list = h('ul', { class: 'admin-members', 'aria-label': 'Members', 'data-testid': 'admin-members' });
  const filter = h('input', { type: 'search', 'aria-label': 'Search members', placeholder: 'Search members', 'data-testid': 'member-search' });
  const render = () => {
    clear(list);
    const q = filter.value.trim().toLowerCase();
    const members = [...s.members.values()]
      .map((m) => ({ m, name: store.displayName(m.user.id, m.user, s.id) }))
      .filter((x) => !q || x.name.toLowerCase().includes(q) || (x.m.user.username || '').toLowerCase().includes(q))
      .sort((a, b) => a.name.localeCompare(b.name));
    for (const { m, name } of members) {
      rememberUser(m.user);
      list.append(h('li', { class: 'admin-member', 'data-testid': 'admin-member', 'data-user-id': m.user.id },
        h('div', { class: 'admin-member-head' }, avatar(m.user, 28), nameWithColor(s, m.user.id, name),
          s.owner_id === m.user.id ? h('span', { class: 'muted small', text: 'owner' }) : null,
          timeoutNote(m)),
        roleToggles(s, m.user.id, name, err),
        moderationButtons(s, m.user, name)));
    }
    if (!members.length) list.append(h('li', { class: 'muted', text: 'No members match.' }));
  };
  filter.addEventListener('input', render);
  render();
  panel.append(err, filter, list);
  return (topics) => { if ((topics.has('community') || topics.has('members')) && !focusedIn(list)) render(); };
}

function timeoutNote(m) {
  const until = m.communication_disabled_until || m.timeout_until;
  if (!until || new Date(until) <= new Date()) return null;
  return h('span', { class: 'badge warn', title: new Date(until).toLocaleString(), text: 'timed out' });
}

function nameWithColor(s, userId, name) {
  const el = h('span', { class: 'member-name', text: name });
  const c = store.memberColor(s.id, userId);
  if (c) { el.style.color = readableOn(c.color); el.title = c.role.name; }
  return el;
}

/** Checkboxes assigning the server's roles (except @everyone) to a member. */
function roleToggles(s, userId, name, err) {
  const canManage = store.can(PERM.MANAGE_ROLES, s.id);
  const roles = store.sortedRoles(s.id).filter((r) => r.id !== s.id).reverse();
  if (!roles.length) return h('div', { class: 'muted small', text: 'No roles yet.' });
  const have = new Set((store.member(s.id, userId) || {}).roles || []);
  return h('div', { class: 'role-toggles', role: 'group', 'aria-label': `Roles of ${name}` }, roles.map((r) => {
    const cb = h('input', { type: 'checkbox', 'aria-label': `Role ${r.name} for ${name}`, 'data-testid': 'member-role', 'data-role-id': r.id, disabled: !canManage });
    cb.checked = have.has(r.id);
    cb.addEventListener('change', async () => {
      if (err) showError(err, null);
      cb.disabled = true;
      try {
        if (cb.checked) await api.addMemberRole(s.id, userId, r.id);
        else await api.removeMemberRole(s.id, userId, r.id);
        const m = store.member(s.id, userId);
        if (m) {
          const set = new Set(m.roles || []);
          if (cb.checked) set.add(r.id); else set.delete(r.id);
          store.apply('MEMBER_UPDATE', { server_id: s.id, user_id: userId, roles: [...set] });
          invalidate(['members', 'messages', 'header']);
        }
      } catch (e) {
        cb.checked = !cb.checked;
        if (err) showError(err, e); else toast(e.message, 'error');
      } finally { cb.disabled = false; }
    });
    return h('label', { class: 'role-chip' }, cb, roleDot(r), h('span', { text: r.name }));
  }));
}

function moderationButtons(s, user, name) {
  if (!store.me || user.id === store.me.id || user.id === s.owner_id) return null;
  const btns = [];
  if (store.can(PERM.KICK_MEMBERS, s.id)) btns.push(h('button', { type: 'button', class: 'btn secondary small', text: 'Kick', 'aria-label': 'Kick', 'data-testid': 'kick-member', onclick: () => moderateDialog('kick', s, user, name) }));
  if (store.can(PERM.BAN_MEMBERS, s.id)) btns.push(h('button', { type: 'button', class: 'btn danger small', text: 'Ban', 'aria-label': 'Ban', 'data-testid': 'ban-member', onclick: () => moderateDialog('ban', s, user, name) }));
  if (store.can(PERM.MODERATE_MEMBERS, s.id)) btns.push(h('button', { type: 'button', class: 'btn secondary small', text: 'Timeout', 'aria-label': 'Timeout', 'data-testid': 'timeout-member', onclick: () => moderateDialog('timeout', s, user, name) }));
  return btns.length ? h('div', { class: 'row mod-buttons' }, btns) : null;
}

const TIMEOUTS = [['600', '10 minutes'], ['3600', '1 hour'], ['86400', '1 day'], ['0', 'Remove timeout']];

/** Kick / ban / timeout with an optional reason. Resolves true when done. */
export function moderateDialog(kind, s, user, name) {
  rememberUser(user);
  const reason = field({ label: 'Reason (optional)', name: 'reason', maxlength: 512, testid: 'moderation-reason' });
  const duration = kind === 'timeout' ? h('select', { 'aria-label': 'Timeout duration', 'data-testid': 'timeout-duration' },
    TIMEOUTS.map(([v, t]) => h('option', { value: v, text: t }))) : null;
  const delMsgs = kind === 'ban' ? h('select', { 'aria-label': 'Delete message history', 'data-testid': 'ban-delete-messages' },
    h('option', { value: '0', text: 'Don\'t delete any' }), h('option', { value: '3600', text: 'Previous hour' }),
    h('option', { value: '86400', text: 'Previous 24 hours' }), h('option', { value: '604800', text: 'Previous 7 days' })) : null;
  const verb = { kick: 'Kick', ban: 'Ban', timeout: 'Timeout' }[kind];
  const text = {
    kick: 'They can rejoin with a new invite.',
    ban: 'They are removed and cannot rejoin until unbanned.',
    timeout: 'They cannot send messages, react, or speak in voice until the timeout ends.',
  }[kind];
  return openDialog({
    title: `${verb} ${name}`, testid: 'moderate-dialog',
    content: [h('p', { text }),
      duration ? h('div', { class: 'field' }, h('label', { text: 'Duration' }), duration) : null,
      delMsgs ? h('div', { class: 'field' }, h('label', { text: 'Delete message history' }), delMsgs) : null,
      reason.el],
    actions: [{ label: 'Cancel', value: false }, {
      label: verb, ariaLabel: `Confirm ${verb.toLowerCase()}`, kind: kind === 'timeout' ? 'primary' : 'danger', submit: true,
      onClick: async () => {
        const r = reason.input.value;
        if (kind === 'kick') await api.kick(s.id, user.id, r);
        else if (kind === 'ban') await api.ban(s.id, user.id, r, Number(delMsgs.value));
        else {
          const secs = Number(duration.value);
          const until = secs ? new Date(Date.now() + secs * 1000).toISOString() : null;
          const m = await api.timeout(s.id, user.id, until, r);
          if (m && m.user) store.apply('MEMBER_UPDATE', { ...m, server_id: s.id });
        }
        if (kind !== 'timeout') store.apply('MEMBER_REMOVE', { server_id: s.id, user_id: user.id });
        invalidate(['members', 'community']);
        toast(kind === 'timeout' ? `${name} timed out` : `${name} ${kind === 'ban' ? 'banned' : 'kicked'}`);
        return true;
      },
    }],
  });
}

/** The member popover (from the member list): roles and moderation. */
export function memberDialog(s, m) {
  const name = store.displayName(m.user.id, m.user, s.id);
  rememberUser(m.user);
  const roles = store.memberRoles(s.id, m.user.id);
  return openDialog({
    title: name, testid: 'member-dialog',
    content: [
      h('div', { class: 'member-card' }, avatar(m.user, 56),
        h('div', {}, nameWithColor(s, m.user.id, name), h('div', { class: 'muted small', text: `@${m.user.username}` }),
          m.joined_at ? h('div', { class: 'muted small', text: `Member since ${new Date(m.joined_at).toLocaleDateString()}` }) : null)),
      h('h3', { class: 'small-head', text: 'Roles' }),
      store.can(PERM.MANAGE_ROLES, s.id) ? roleToggles(s, m.user.id, name, null)
        : h('div', { class: 'role-toggles' }, roles.length ? roles.map((r) => h('span', { class: 'role-chip' }, roleDot(r), h('span', { text: r.name }))) : h('span', { class: 'muted small', text: 'No roles' })),
      moderationButtonsClosing(s, m.user, name),
      voiceMoveControls(s, m.user.id, name),
    ],
    actions: [{ label: 'Close' }],
  });
}

/** Move a member who is in voice to another voice or stage channel, or disconnect them
 * (MOVE_MEMBERS; the server checks the channels and the hierarchy). */
function voiceMoveControls(s, userId, name) {
  const vs = store.voiceStates.get(userId);
  if (!vs || vs.server_id !== s.id || !store.can(PERM.MOVE_MEMBERS, s.id)) return null;
  const err = errorLine();
  const targets = [...s.channels.values()].filter((c) => (c.type === 'voice' || c.type === 'stage') && c.id !== vs.channel_id);
  const select = h('select', { 'aria-label': `Voice channel to move ${name} to`, 'data-testid': 'move-target' },
    targets.map((c) => h('option', { value: c.id, text: c.name })));
  const act = async (channelId) => {
    showError(err, null);
    try {
      await api.moveMember(s.id, userId, channelId);
      document.querySelector('[data-testid="member-dialog"]')?.close();
    } catch (e) { showError(err, e); }
  };
  return h('div', { class: 'voice-move', 'data-testid': 'voice-move' },
    h('h3', { class: 'small-head', text: 'Voice' }),
    h('div', { class: 'row' },
      targets.length ? select : null,
      targets.length ? h('button', { type: 'button', class: 'btn secondary small', text: 'Move', 'data-testid': 'move-member', onclick: () => act(select.value) }) : null,
      h('button', { type: 'button', class: 'btn danger small', text: 'Disconnect', 'data-testid': 'disconnect-member', onclick: () => act(null) })),
    err);
}

function moderationButtonsClosing(s, user, name) {
  const el = moderationButtons(s, user, name);
  if (!el) return null;
  // After a kick/ban the member is gone: close the card too.
  for (const b of el.querySelectorAll('button')) {
    const kind = b.dataset.testid.split('-')[0];
    b.onclick = null;
    const clone = b.cloneNode(true);
    clone.addEventListener('click', async () => {
      const done = await moderateDialog(kind, s, user, name);
      if (done && kind !== 'timeout') document.querySelector('[data-testid="member-dialog"]')?.close();
    });
    b.replaceWith(clone);
  }
  return el;
}

// ------------------------------------------------------------------ invites tab

function invitesTab(s, view, panel) {
  const err = errorLine();
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Invites', 'data-testid': 'invite-list' });
  const load = async () => {
    clear(list).append(h('li', { class: 'muted', text: 'Loading…' }));
    try {
      const invites = await api.invites(s.id);
      clear(list);
      for (const inv of invites) {
        const expires = inv.expires_at ? `expires ${new Date(inv.expires_at).toLocaleString()}` : 'never expires';
        const uses = `${inv.uses} / ${inv.max_uses ? inv.max_uses : '∞'} uses`;
        list.append(h('li', { class: 'admin-row', 'data-testid': 'invite-row', 'data-code': inv.code },
          h('div', {},
            h('code', { text: inv.code }),
            h('div', { class: 'muted small', text: `by ${userName(inv.inviter_id, s.id)} · ${uses} · ${expires}` })),
          h('button', { type: 'button', class: 'btn danger small', text: 'Revoke', 'aria-label': `Revoke invite ${inv.code}`, 'data-testid': 'revoke-invite',
            onclick: async () => {
              showError(err, null);
              try { await api.revokeInvite(inv.code); load(); } catch (e) { showError(err, e); }
            } })));
      }
      if (!invites.length) list.append(h('li', { class: 'muted', text: 'No active invites.' }));
    } catch (e) { clear(list); showError(err, e); }
  };
  load();
  panel.append(err, list);
  return null;
}

// ------------------------------------------------------------------ bans tab

function bansTab(s, view, panel) {
  const err = errorLine();
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Bans', 'data-testid': 'ban-list' });
  const load = async () => {
    try {
      const bans = await api.bans(s.id);
      clear(list);
      for (const b of bans) {
        const name = userName(b.user_id, s.id);
        list.append(h('li', { class: 'admin-row', 'data-testid': 'ban-row', 'data-user-id': b.user_id },
          h('div', {}, h('div', { text: name }),
            h('div', { class: 'muted small', text: `${b.reason ? `Reason: ${b.reason} · ` : ''}banned ${new Date(b.created_at).toLocaleString()}` })),
          h('button', { type: 'button', class: 'btn secondary small', text: 'Unban', 'aria-label': `Unban ${name}`, 'data-testid': 'unban',
            onclick: async () => {
              showError(err, null);
              try { await api.unban(s.id, b.user_id); load(); } catch (e) { showError(err, e); }
            } })));
      }
      if (!bans.length) list.append(h('li', { class: 'muted', text: 'Nobody is banned.' }));
    } catch (e) { clear(list); showError(err, e); }
  };
  list.append(h('li', { class: 'muted', text: 'Loading…' }));
  load();
  panel.append(err, list);
  return (topics) => { if (topics.has('community')) load(); };
}

// ------------------------------------------------------------------ audit log tab

const AUDIT_ACTIONS = {
  server_update: 'Updated the server', invite_create: 'Created an invite', invite_delete: 'Revoked an invite',
  role_create: 'Created a role', role_update: 'Updated a role', role_delete: 'Deleted a role',
  member_role_update: 'Changed member roles', channel_overwrite_update: 'Changed channel permissions',
  channel_overwrite_delete: 'Removed channel permissions', member_kick: 'Kicked', member_ban_add: 'Banned',
  member_ban_remove: 'Unbanned', member_timeout: 'Timed out',
  automod_rule_create: 'Created an AutoMod rule', automod_rule_update: 'Updated an AutoMod rule',
  automod_rule_delete: 'Deleted an AutoMod rule', automod_trigger: 'AutoMod acted on a message by',
  raid_mode_enable: 'Turned raid mode on', raid_mode_disable: 'Turned raid mode off',
  safety_update: 'Changed safety settings', report_resolve: 'Acted on a report',
};

function auditTarget(s, e) {
  if (!e.target_id) return (e.changes && typeof e.changes.code === 'string') ? e.changes.code : '';
  if (e.target_id === s.id) return e.action.startsWith('role') || e.action.startsWith('channel_overwrite') ? EVERYONE : s.name;
  const role = s.roles.get(e.target_id);
  if (role) return role.name;
  const ch = s.channels.get(e.target_id);
  if (ch) return `#${ch.name}`;
  if (e.action.startsWith('role') && e.changes && typeof e.changes.name === 'string') return e.changes.name;
  if (e.action.startsWith('member') || store.userById(e.target_id) || knownUsers.has(e.target_id)) return userName(e.target_id, s.id);
  return e.target_id;
}

function auditChanges(s, e) {
  const c = e.changes;
  if (!c || typeof c !== 'object' || Array.isArray(c)) return '';
  const roleList = (ids) => (Array.isArray(ids) ? ids : []).map((id) => { const r = s.roles.get(id); return r ? r.name : `role ${id}`; }).join(', ');
  if (e.action === 'member_role_update') {
    const parts = [];
    if (c.$add) parts.push(`added ${roleList(c.$add)}`);
    if (c.$remove) parts.push(`removed ${roleList(c.$remove)}`);
    return parts.join('; ');
  }
  if (e.action.startsWith('channel_overwrite') && c.id) {
    const who = c.id === s.id ? EVERYONE : c.type === 'member' ? userName(c.id, s.id) : (s.roles.get(c.id)?.name || `role ${c.id}`);
    const names = (v) => PERMISSIONS.filter((p) => perms(v) & p.value).map((p) => p.label).join(', ') || 'none';
    return e.action === 'channel_overwrite_delete' ? `for ${who}` : `for ${who}: allow ${names(c.allow)}; deny ${names(c.deny)}`;
  }
  const keys = Object.keys(c).filter((k) => k !== 'id').slice(0, 6);
  return keys.length ? `changed: ${keys.join(', ')}` : '';
}

function auditTab(s, view, panel) {
  const err = errorLine();
  const filter = h('select', { 'aria-label': 'Filter by action', 'data-testid': 'audit-filter' },
    h('option', { value: '', text: 'All actions' }),
    Object.entries(AUDIT_ACTIONS).map(([v, t]) => h('option', { value: v, text: t })));
  filter.value = view.auditAction;
  const list = h('ol', { class: 'admin-list audit', 'aria-label': 'Audit log', 'data-testid': 'audit-list' });
  const more = h('button', { type: 'button', class: 'btn secondary small', text: 'Load more', hidden: true });
  let oldest = null;
  // Only the newest request's answer is shown: a slow unfiltered page must not land after the
  // filtered one the user asked for since.
  let seq = 0;
  const load = async (append = false) => {
    showError(err, null);
    const mine = ++seq;
    try {
      const entries = await api.auditLog(s.id, { action: filter.value || undefined, before: append ? oldest : undefined, limit: 50 });
      if (mine !== seq) return;
      if (!append) clear(list);
      for (const e of entries) {
        oldest = e.id;
        list.append(h('li', { class: 'audit-entry', 'data-testid': 'audit-entry', 'data-action': e.action, 'data-target-id': e.target_id || '' },
          h('div', {},
            h('strong', { text: e.actor_id ? userName(e.actor_id, s.id) : 'System' }), ' ',
            h('span', { class: 'audit-action', text: AUDIT_ACTIONS[e.action] || e.action }), ' ',
            h('span', { class: 'audit-target', text: auditTarget(s, e) })),
          h('div', { class: 'muted small' },
            h('time', { datetime: e.created_at, text: new Date(e.created_at).toLocaleString() }),
            auditChanges(s, e) ? ` · ${auditChanges(s, e)}` : '',
            e.reason ? h('span', { class: 'audit-reason', text: ` · Reason: ${e.reason}` }) : null)));
      }
      if (!append && !entries.length) list.append(h('li', { class: 'muted', text: 'No entries.' }));
      more.hidden = entries.length < 50;
    } catch (e) { showError(err, e); }
  };
  filter.addEventListener('change', () => { view.auditAction = filter.value; load(); });
  more.addEventListener('click', () => load(true));
  load();
  panel.append(err, h('div', { class: 'row' }, filter,
    h('button', { type: 'button', class: 'btn secondary small', text: 'Refresh', 'aria-label': 'Refresh audit log', onclick: () => load() })), list, more);
  return null;
}

// =====================================================================================
// Channel permission overwrites

export async function channelPermissionsDialog(channel) {
  const s = store.servers.get(channel.server_id);
  if (!s) return;
  await ensureRoles(s.id);
  let existing;
  try { existing = await api.overwrites(channel.id); } catch (e) { toast(`Could not load permissions: ${e.message}`, 'error'); return; }
  // id -> {id, type, allow, deny, saved: bool, dirty: bool}
  const targets = new Map();
  for (const o of existing) targets.set(o.id, { id: o.id, type: o.type, allow: perms(o.allow), deny: perms(o.deny), saved: true, dirty: false });
  if (!targets.has(s.id)) targets.set(s.id, { id: s.id, type: 'role', allow: 0n, deny: 0n, saved: false, dirty: false });
  let selected = s.id;

  const targetName = (t) => {
    if (t.type === 'role') { const r = s.roles.get(t.id); return t.id === s.id ? EVERYONE : (r ? r.name : `role ${t.id}`); }
    return userName(t.id, s.id);
  };
  const side = h('ul', { class: 'ow-targets', 'aria-label': 'Roles and members', 'data-testid': 'overwrite-targets' });
  const addSel = h('select', { 'aria-label': 'Add a role or member', 'data-testid': 'overwrite-add' });
  const grid = h('div', { class: 'ow-grid', 'data-testid': 'overwrite-grid' });

  const renderAdd = () => {
    clear(addSel).append(h('option', { value: '', text: 'Add a role or member…' }));
    const roles = store.sortedRoles(s.id).filter((r) => !targets.has(r.id)).reverse();
    if (roles.length) addSel.append(h('optgroup', { label: 'Roles' }, roles.map((r) => h('option', { value: `role:${r.id}`, text: r.name }))));
    const members = [...s.members.values()].filter((m) => !targets.has(m.user.id));
    if (members.length) addSel.append(h('optgroup', { label: 'Members' }, members.map((m) => h('option', { value: `member:${m.user.id}`, text: store.displayName(m.user.id, m.user, s.id) }))));
  };
  addSel.addEventListener('change', () => {
    const [type, id] = addSel.value.split(':');
    if (!id) return;
    if (!targets.has(id)) targets.set(id, { id, type, allow: 0n, deny: 0n, saved: false, dirty: false });
    selected = id;
    renderSide(); renderGrid(); renderAdd();
  });

  const renderSide = () => {
    clear(side);
    const order = [...targets.values()].sort((a, b) => (a.id === s.id ? -1 : b.id === s.id ? 1 : 0) || (a.type === b.type ? 0 : a.type === 'role' ? -1 : 1) || cmpId(a.id, b.id));
    for (const t of order) {
      const r = t.type === 'role' ? s.roles.get(t.id) : null;
      side.append(h('li', {}, h('button', {
        type: 'button', class: `role-item${t.id === selected ? ' active' : ''}`, 'aria-pressed': String(t.id === selected),
        'data-testid': 'overwrite-target', 'data-target-id': t.id, 'data-target-type': t.type,
        onclick: () => { selected = t.id; renderSide(); renderGrid(); },
      }, r ? roleDot(r) : h('span', { class: 'muted', 'aria-hidden': 'true', text: '@' }),
      h('span', { class: 'role-name', text: targetName(t) }), t.dirty ? h('span', { class: 'muted', text: ' •', title: 'unsaved' }) : null)));
    }
  };

  const renderGrid = () => {
    clear(grid);
    const t = targets.get(selected);
    if (!t) return;
    grid.append(h('p', { class: 'muted small' }, 'Overwrites for ', h('strong', { text: targetName(t) }), ` in ${channel.type === 'category' ? '' : '#'}${channel.name}: allow, deny, or leave neutral to inherit.`));
    const table = h('div', { class: 'ow-table', role: 'group', 'aria-label': `Permissions for ${targetName(t)}` });
    for (const p of PERMISSIONS) {
      if (p.name === 'ADMINISTRATOR' || p.name === 'MANAGE_SERVER' || p.name === 'KICK_MEMBERS' || p.name === 'BAN_MEMBERS' ||
        p.name === 'VIEW_AUDIT_LOG' || p.name === 'MODERATE_MEMBERS' || p.name === 'CHANGE_NICKNAME' || p.name === 'MANAGE_NICKNAMES') continue;  // server-wide only
      const state = (t.allow & p.value) ? 'allow' : (t.deny & p.value) ? 'deny' : 'neutral';
      const groupName = `ow-${channel.id}-${t.id}-${p.name}`;
      const opts = [['deny', '✕', 'Deny'], ['neutral', '/', 'Neutral'], ['allow', '✓', 'Allow']].map(([v, sym, word]) => {
        const radio = h('input', { type: 'radio', name: groupName, value: v, 'aria-label': `${word} ${p.label}`, 'data-perm': p.name, 'data-state': v });
        radio.checked = v === state;
        radio.addEventListener('change', () => {
          if (!radio.checked) return;
          t.allow &= ~p.value; t.deny &= ~p.value;
          if (v === 'allow') t.allow |= p.value;
          if (v === 'deny') t.deny |= p.value;
          t.dirty = true;
          renderSide();
        });
        return h('label', { class: `ow-opt ${v}`, title: word }, radio, h('span', { 'aria-hidden': 'true', text: sym }));
      });
      table.append(h('div', { class: 'ow-row', 'data-perm': p.name }, h('span', { class: 'ow-label', text: p.label }), h('span', { class: 'ow-opts' }, opts)));
    }
    grid.append(table);
  };

  renderSide(); renderGrid(); renderAdd();
  await openDialog({
    title: `Permissions: ${channel.type === 'category' ? '' : '#'}${channel.name}`, testid: 'channel-permissions-dialog', wide: true,
    content: [h('div', { class: 'roles-layout' }, h('div', {}, side, addSel), grid)],
    actions: [{ label: 'Cancel' }, {
      label: 'Save changes', submit: true, onClick: async () => {
        for (const t of targets.values()) {
          if (!t.dirty) continue;
          if (t.allow === 0n && t.deny === 0n) {
            if (t.saved) await api.deleteOverwrite(channel.id, t.id);
          } else {
            await api.putOverwrite(channel.id, t.id, { type: t.type, allow: t.allow.toString(), deny: t.deny.toString() });
            t.saved = true;
          }
          t.dirty = false;
        }
        toast('Channel permissions saved');
      },
    }],
  });
}

// =====================================================================================
// Reactions

/** Reaction chips under a message (live counts as seen by this client). */
export function reactionBar(m) {
  const byEmoji = store.reactionsOf(m.id);
  if (!byEmoji || !byEmoji.size) return null;
  const me = store.me && store.me.id;
  const bar = h('div', { class: 'reactions', 'data-testid': 'reactions' });
  for (const [emoji, users] of byEmoji) {
    const mine = users.has(me);
    const n = users.size;
    bar.append(h('button', {
      type: 'button', class: `reaction${mine ? ' me' : ''}`, 'aria-pressed': String(mine),
      'aria-label': `${reactionName(emoji)} ${n} reaction${n === 1 ? '' : 's'}${mine ? ', including you' : ''}`,
      title: [...users].slice(0, 10).map((u) => userName(u, m.server_id)).join(', '),
      'data-testid': 'reaction', 'data-emoji': emoji, 'data-count': String(n), 'data-me': String(mine),
      onclick: () => toggleReaction(m, emoji),
    }, h('span', { class: 'reaction-emoji' }, reactionFace(emoji)), h('span', { class: 'reaction-count', text: String(n) })));
  }
  bar.append(h('button', { type: 'button', class: 'reaction add', 'aria-label': 'Add reaction', title: 'Add reaction', text: '+', onclick: (e) => openReactionPicker(m, e.currentTarget) }));
  return bar;
}

export async function toggleReaction(m, emoji) {
  const me = store.me && store.me.id;
  const byEmoji = store.reactionsOf(m.id);
  const mine = !!(byEmoji && byEmoji.get(emoji) && byEmoji.get(emoji).has(me));
  try {
    if (mine) await api.removeReaction(m.channel_id, m.id, emoji);
    else await api.addReaction(m.channel_id, m.id, emoji);
    store.setReaction(m.id, emoji, me, !mine);
    invalidate(['reactions']);
    // Sync the full list once (history doesn't carry counts): cheap, and only on my own click.
    api.reactors(m.channel_id, m.id, emoji).then((users) => {
      if (!Array.isArray(users)) return;
      for (const u of users) rememberUser(u);
      store.setReactors(m.id, emoji, users.map((u) => u.id));
      invalidate(['reactions']);
    }).catch(() => {});
  } catch (e) {
    toast(`Could not react: ${e.message}`, 'error');
  }
}

let picker = null;
function closePicker() {
  if (!picker) return;
  picker.el.remove();
  document.removeEventListener('mousedown', picker.outside, true);
  document.removeEventListener('keydown', picker.key, true);
  const back = picker.anchor;
  picker = null;
  if (back && back.isConnected) back.focus();
}

export function openReactionPicker(m, anchor) {
  closePicker();
  const pick = (emoji) => { closePicker(); const byE = store.reactionsOf(m.id); if (!(byE && byE.get(emoji) && byE.get(emoji).has(store.me.id))) toggleReaction(m, emoji); };
  const el = h('div', { class: 'emoji-picker', role: 'dialog', 'aria-label': 'Pick a reaction', 'data-testid': 'reaction-picker' },
    REACTION_PALETTE.map((emoji) => h('button', {
      type: 'button', class: 'emoji-btn', 'aria-label': `React with ${emoji}`, 'data-emoji': emoji, text: emoji,
      onclick: () => pick(emoji),
    })),
    // The server's own emoji the user may use (docs/emoji.md).
    m.server_id ? customReactionButtons(m.server_id, pick) : null);
  document.body.append(el);
  const r = anchor.getBoundingClientRect();
  const w = el.offsetWidth || 280;
  el.style.left = `${Math.max(8, Math.min(window.innerWidth - w - 8, r.right - w))}px`;
  el.style.top = `${r.bottom + 4 + el.offsetHeight > window.innerHeight ? Math.max(8, r.top - el.offsetHeight - 4) : r.bottom + 4}px`;
  const outside = (e) => { if (!el.contains(e.target) && e.target !== anchor) closePicker(); };
  const key = (e) => { if (e.key === 'Escape') { e.stopPropagation(); closePicker(); } };
  document.addEventListener('mousedown', outside, true);
  document.addEventListener('keydown', key, true);
  picker = { el, outside, key, anchor };
  el.querySelector('button').focus();
}

// =====================================================================================
// Pins

const pinCache = new Map();  // channel_id -> {list, version}
export function pinnedIds(channelId) {
  const c = pinCache.get(channelId);
  return c ? new Set(c.list.map((m) => m.id)) : new Set();
}

export async function loadPins(channelId, force = false) {
  const version = store.pinsVersion.get(channelId) || 0;
  const c = pinCache.get(channelId);
  if (c && !force && c.version === version) return c.list;
  const list = await api.pins(channelId);
  for (const m of list) rememberUser(m.author);
  pinCache.set(channelId, { list, version });
  return list;
}

export async function setPinned(m, pin) {
  try {
    if (pin) await api.pin(m.channel_id, m.id); else await api.unpin(m.channel_id, m.id);
    await loadPins(m.channel_id, true);
    invalidate(['messages', 'pins']);
    toast(pin ? 'Message pinned' : 'Message unpinned');
  } catch (e) {
    toast(`Could not ${pin ? 'pin' : 'unpin'}: ${e.message}`, 'error');
  }
}

let pinsPop = null;
export function closePins() {
  if (!pinsPop) return;
  pinsPop.el.remove();
  document.removeEventListener('mousedown', pinsPop.outside, true);
  document.removeEventListener('keydown', pinsPop.key, true);
  listeners.delete(pinsPop.listener);
  const back = pinsPop.anchor;
  pinsPop = null;
  if (back && back.isConnected) back.setAttribute('aria-expanded', 'false');
}

export function togglePins(channel, anchor) {
  if (pinsPop && pinsPop.channelId === channel.id) { closePins(); return; }
  closePins();
  const list = h('ol', { class: 'pins-list', 'data-testid': 'pins-list' });
  const el = h('div', { class: 'pins-popover', role: 'dialog', 'aria-label': 'Pinned messages', 'data-testid': 'pins-popover' },
    h('header', { class: 'pins-head' }, h('h3', { text: 'Pinned messages' }),
      h('button', { type: 'button', class: 'icon-btn tiny', 'aria-label': 'Close pinned messages', text: '✕', onclick: closePins })),
    list);
  const canManage = store.can(PERM.MANAGE_MESSAGES, channel.server_id);
  const render = async (force) => {
    let pins;
    try { pins = await loadPins(channel.id, force); } catch (e) { clear(list).append(h('li', { class: 'form-error', text: e.message })); return; }
    clear(list);
    if (!pins.length) list.append(h('li', { class: 'muted pad', text: 'This channel doesn\'t have any pinned messages yet.' }));
    for (const m of pins) {
      const date = new Date(m.created_at);
      list.append(h('li', { class: 'pin', 'data-testid': 'pinned-message', 'data-message-id': m.id },
        h('div', { class: 'msg-head' }, h('span', { class: 'author', text: store.displayName(m.author && m.author.id, m.author, m.server_id) }),
          h('time', { datetime: m.created_at, text: date.toLocaleString() })),
        h('div', { class: 'content' }, renderMarkdown(m.content)),
        canManage ? h('button', { type: 'button', class: 'link-btn small', text: 'Unpin', 'aria-label': 'Unpin message', onclick: () => setPinned(m, false) }) : null));
    }
  };
  document.body.append(el);
  const r = anchor.getBoundingClientRect();
  el.style.top = `${r.bottom + 6}px`;
  el.style.left = `${Math.max(8, Math.min(window.innerWidth - 8 - el.offsetWidth, r.right - el.offsetWidth))}px`;
  const outside = (e) => { if (!el.contains(e.target) && !anchor.contains(e.target) && !e.target.closest('dialog')) closePins(); };
  const key = (e) => { if (e.key === 'Escape' && !document.querySelector('dialog[open]')) closePins(); };
  const listener = (topics) => { if (topics.has('pins')) render(false); };
  document.addEventListener('mousedown', outside, true);
  document.addEventListener('keydown', key, true);
  listeners.add(listener);
  anchor.setAttribute('aria-expanded', 'true');
  pinsPop = { el, outside, key, listener, anchor, channelId: channel.id };
  list.append(h('li', { class: 'muted pad', text: 'Loading…' }));
  render(true);
}

