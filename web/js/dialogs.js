// Dialogs: servers (create, join, rename, delete, leave), channels, invites, user settings.

import { api, store, voice, invalidate } from './context.js';
import { ApiError } from './api.js';
import { sortChannels } from './state.js';
import { h, clear, openDialog, field, showFieldErrors, toast, safeHttpUrl } from './dom.js';
import { channelPermissionsDialog } from './community.js';
import { selectServer, selectChannel } from './navigation.js';
import { ensureMessagesLoaded } from './messages.js';
import { logout } from './auth-view.js';
import { avatarSection } from './avatar-upload.js';
import { notificationsSection } from './notifications.js';

/** Accept a bare code, "/invite/CODE", or a full URL ending in /invite/CODE (or /CODE). */
export function parseInviteCode(input) {
  let s = String(input || '').trim();
  if (!s) return null;
  try {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) s = new URL(s).pathname;
  } catch { /* not a URL */ }
  s = s.split(/[?#]/)[0];
  const parts = s.split('/').filter(Boolean);
  const i = parts.lastIndexOf('invite');
  const code = i !== -1 && parts[i + 1] ? parts[i + 1] : parts[parts.length - 1];
  return code && /^[A-Za-z0-9_-]{1,64}$/.test(code) ? code : null;
}

// A server created or joined by REST, until it is in the store (SERVER_CREATE may come first).
let awaitingServer = null;

/** SERVER_CREATE: the one we are waiting for opens at once. */
export function onServerCreate(id) {
  if (!awaitingServer || awaitingServer !== id) return;
  awaitingServer = null;
  selectServer(id);
}

export function createServerDialog() {
  const name = field({ label: 'Server name', name: 'name', value: store.me ? `${store.me.display_name || store.me.username}'s server` : '', required: true, maxlength: 100 });
  openDialog({
    title: 'Create a server', testid: 'create-server-dialog',
    content: [h('p', { class: 'muted', text: 'Your server is where you and your friends hang out.' }), name.el],
    actions: [
      { label: 'Cancel' },
      { label: 'Create', submit: true, onClick: async () => {
        const n = name.input.value.trim();
        if (!n) throw Object.assign(new Error('Give your server a name.'), { errors: { name: ['Required.'] } });
        const s = await api.createServer(n);
        await addServerFromRest(s);
      } },
    ],
  });
}

/** After creating/joining via REST: add the server right away (SERVER_CREATE may come later). */
async function addServerFromRest(s) {
  awaitingServer = s.id;
  if (!store.servers.has(s.id)) {
    try {
      const [channels, members] = await Promise.all([api.channels(s.id), api.members(s.id)]);
      if (!store.servers.has(s.id)) store.upsertServer({ ...s, channels, members });
    } catch {
      store.upsertServer(s);
    }
  }
  awaitingServer = null;
  selectServer(s.id);
}

export async function joinServerDialog(prefill = '') {
  const code = field({ label: 'Invite link or code', name: 'code', value: prefill || '', placeholder: 'https://confab.example/invite/hTKzmak or hTKzmak', required: true });
  const preview = h('div', { class: 'invite-preview muted', 'data-testid': 'invite-preview' });
  const showPreview = async () => {
    const c = parseInviteCode(code.input.value);
    clear(preview);
    if (!c) return;
    try {
      const inv = await api.getInvite(c);
      if (parseInviteCode(code.input.value) !== c) return;
      preview.append(`You've been invited to join `, h('strong', { text: (inv.server && inv.server.name) || 'a server' }));
    } catch { /* invalid invite: shown on submit */ }
  };
  code.input.addEventListener('change', showPreview);
  if (prefill) showPreview();
  await openDialog({
    title: 'Join a server', testid: 'join-server-dialog',
    content: [h('p', { class: 'muted', text: 'Enter an invite below to join an existing server.' }), code.el, preview],
    actions: [
      { label: 'Cancel' },
      { label: 'Join server', submit: true, onClick: async () => {
        const c = parseInviteCode(code.input.value);
        if (!c) throw Object.assign(new Error('That doesn\'t look like an invite link or code.'), { errors: { code: ['Enter an invite code or link.'] } });
        let s;
        try { s = await api.joinInvite(c); } catch (e) {
          if (e instanceof ApiError && e.status === 404) throw Object.assign(new Error('This invite is invalid or has expired.'), { errors: { code: ['Invalid or expired invite.'] } });
          throw e;
        }
        await addServerFromRest(s);
      } },
    ],
  });
}

export function renameServerDialog() {
  const s = store.server;
  if (!s) return;
  const name = field({ label: 'Server name', name: 'name', value: s.name, required: true, maxlength: 100 });
  openDialog({
    title: 'Rename server', content: [name.el],
    actions: [{ label: 'Cancel' }, { label: 'Save', submit: true, onClick: async () => {
      const updated = await api.updateServer(s.id, { name: name.input.value.trim() });
      store.apply('SERVER_UPDATE', updated);
      invalidate(['servers', 'header']);
    } }],
  });
}

export function deleteServerDialog() {
  const s = store.server;
  if (!s) return;
  openDialog({
    title: `Delete '${s.name}'`, content: [h('p', { text: 'This cannot be undone. All channels and messages will be deleted.' })],
    actions: [{ label: 'Cancel' }, { label: 'Delete server', kind: 'danger', submit: true, onClick: async () => {
      await api.deleteServer(s.id);
      store.apply('SERVER_DELETE', { id: s.id });
      if (voice && voice.serverId === s.id) voice.leave();
      invalidate(['all']);
    } }],
  });
}

export function leaveServerDialog() {
  const s = store.server;
  if (!s) return;
  openDialog({
    title: `Leave '${s.name}'`, content: [h('p', { text: 'You won\'t be able to rejoin unless you are re-invited.' })],
    actions: [{ label: 'Cancel' }, { label: 'Leave server', kind: 'danger', submit: true, onClick: async () => {
      if (voice && voice.serverId === s.id) voice.leave();
      await api.leaveServer(s.id);
      store.apply('SERVER_DELETE', { id: s.id });
      invalidate(['all']);
    } }],
  });
}

function categorySelect(server, selected) {
  const sel = h('select', { name: 'parent_id', 'aria-label': 'Category', 'data-testid': 'field-parent_id' },
    h('option', { value: '', text: 'No category' }),
    sortChannels([...server.channels.values()].filter((c) => c.type === 'category')).map((c) => h('option', { value: c.id, text: c.name })));
  sel.value = selected || '';
  return sel;
}

export function createChannelDialog(parentId = null) {
  const s = store.server;
  if (!s) return;
  const name = field({ label: 'Channel name', name: 'name', placeholder: 'new-channel', required: true, maxlength: 100 });
  const type = h('select', { name: 'type', 'aria-label': 'Channel type', 'data-testid': 'field-type' },
    h('option', { value: 'text', text: 'Text' }), h('option', { value: 'voice', text: 'Voice' }), h('option', { value: 'stage', text: 'Stage' }), h('option', { value: 'forum', text: 'Forum' }), h('option', { value: 'category', text: 'Category' }));
  const parent = categorySelect(s, parentId);
  type.addEventListener('change', () => { parent.disabled = type.value === 'category'; });
  openDialog({
    title: 'Create channel', testid: 'create-channel-dialog',
    content: [
      h('div', { class: 'field' }, h('label', { text: 'Channel type' }), type, h('div', { class: 'field-error', 'data-error-for': 'type' })),
      name.el,
      h('div', { class: 'field' }, h('label', { text: 'Category' }), parent, h('div', { class: 'field-error', 'data-error-for': 'parent_id' })),
    ],
    actions: [{ label: 'Cancel' }, { label: 'Create channel', submit: true, onClick: async () => {
      const body = { name: name.input.value.trim(), type: type.value };
      if (type.value !== 'category' && parent.value) body.parent_id = parent.value;
      const c = await api.createChannel(s.id, body);
      store.apply('CHANNEL_CREATE', c);
      invalidate(['channels']);
      if (c.type === 'text') selectChannel(c.id);
    } }],
  });
}

export function editChannelDialog(c) {
  const s = store.servers.get(c.server_id);
  const name = field({ label: c.type === 'category' ? 'Category name' : 'Channel name', name: 'name', value: c.name, required: true, maxlength: 100 });
  const topic = c.type === 'text' ? field({ label: 'Topic', name: 'topic', type: 'textarea', value: c.topic || '', maxlength: 1024 }) : null;
  const parent = c.type !== 'category' && s ? categorySelect(s, c.parent_id) : null;
  // Voice channels: end-to-end encryption (docs/e2ee.md); the server refuses the change while
  // anyone is connected.
  const e2ee = c.type === 'voice' ? h('input', { type: 'checkbox', 'data-testid': 'channel-e2ee', checked: !!c.e2ee }) : null;
  const permsBtn = h('button', { type: 'button', class: 'btn secondary', text: 'Edit permissions', 'aria-label': 'Channel permissions', 'data-testid': 'edit-channel-permissions',
    onclick: () => { document.querySelector('[data-testid="edit-channel-dialog"]')?.close(); channelPermissionsDialog(c); } });
  openDialog({
    title: `Edit ${c.type === 'category' ? 'category' : 'channel'}`, testid: 'edit-channel-dialog',
    content: [name.el, topic && topic.el,
      parent ? h('div', { class: 'field' }, h('label', { text: 'Category' }), parent, h('div', { class: 'field-error', 'data-error-for': 'parent_id' })) : null,
      e2ee ? h('div', { class: 'field' }, h('label', {}, e2ee, ' End-to-end encrypted voice and video (the server cannot hear it)'), h('div', { class: 'field-error', 'data-error-for': 'e2ee' })) : null,
      h('div', { class: 'field' }, h('label', { text: 'Permissions' }), permsBtn)],
    actions: [{ label: 'Cancel' }, { label: 'Save', submit: true, onClick: async () => {
      const patch = {};
      const n = name.input.value.trim();
      if (n !== c.name) patch.name = n;
      if (topic && topic.input.value !== (c.topic || '')) patch.topic = topic.input.value;
      if (parent && (parent.value || null) !== (c.parent_id || null)) patch.parent_id = parent.value || null;
      if (e2ee && e2ee.checked !== !!c.e2ee) patch.e2ee = e2ee.checked;
      if (!Object.keys(patch).length) return;
      const updated = await api.updateChannel(c.id, patch);
      store.apply('CHANNEL_UPDATE', updated);
      invalidate(['channels', 'header', 'composer']);
    } }],
  });
}

export function deleteChannelDialog(c) {
  openDialog({
    title: `Delete ${c.type === 'category' ? 'category' : 'channel'}`, testid: 'delete-channel-dialog',
    content: [h('p', {}, 'Are you sure you want to delete ', h('strong', { text: c.type === 'text' ? `#${c.name}` : c.name }), '? This cannot be undone.')],
    actions: [{ label: 'Cancel' }, { label: 'Delete', kind: 'danger', submit: true, onClick: async () => {
      if (voice && voice.channelId === c.id) voice.leave();
      await api.deleteChannel(c.id);
      store.apply('CHANNEL_DELETE', c);
      invalidate(['channels', 'header', 'messages', 'typing', 'composer']);
      ensureMessagesLoaded();
    } }],
  });
}

function inviteLink(code) { return `${location.origin}/invite/${code}`; }

function inviteBox() {
  const box = h('div', { class: 'invite-box', 'data-testid': 'invite-box' });
  const s = store.server;
  if (!s) { box.append(h('p', { class: 'muted', text: 'Select a server first.' })); return box; }
  const out = h('input', { type: 'text', readonly: true, 'aria-label': 'Invite link', 'data-testid': 'invite-link', placeholder: 'Create an invite to get a link' });
  const maxAge = h('select', { 'aria-label': 'Expire after', 'data-testid': 'invite-max-age' },
    h('option', { value: '1800', text: '30 minutes' }), h('option', { value: '3600', text: '1 hour' }),
    h('option', { value: '86400', text: '1 day' }), h('option', { value: '604800', text: '7 days' }), h('option', { value: '0', text: 'Never' }));
  maxAge.value = '604800';
  const maxUses = h('select', { 'aria-label': 'Max uses', 'data-testid': 'invite-max-uses' },
    h('option', { value: '0', text: 'No limit' }), h('option', { value: '1', text: '1 use' }), h('option', { value: '5', text: '5 uses' }),
    h('option', { value: '25', text: '25 uses' }), h('option', { value: '100', text: '100 uses' }));
  // Temporary: who joins through it leaves when they go offline, unless given a role.
  const temporary = h('input', { type: 'checkbox', 'data-testid': 'invite-temporary', title: 'Members leave when they go offline unless given a role' });
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const copy = h('button', { type: 'button', class: 'btn secondary', text: 'Copy', 'aria-label': 'Copy invite link', 'data-testid': 'copy-invite', disabled: true });
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(out.value); copy.textContent = 'Copied'; } catch {
      out.select(); document.execCommand && document.execCommand('copy'); copy.textContent = 'Copied';
    }
    setTimeout(() => { copy.textContent = 'Copy'; }, 2000);
  });
  const create = h('button', { type: 'button', class: 'btn primary', text: 'Create invite', 'aria-label': 'Create invite', 'data-testid': 'create-invite' });
  create.addEventListener('click', async () => {
    err.hidden = true;
    create.disabled = true;
    try {
      const body = {};
      if (Number(maxAge.value)) body.max_age = Number(maxAge.value);
      if (Number(maxUses.value)) body.max_uses = Number(maxUses.value);
      if (temporary.checked) body.temporary = true;
      const inv = await api.createInvite(s.id, body);
      out.value = inviteLink(inv.code);
      out.dataset.code = inv.code;
      copy.disabled = false;
      out.select();
    } catch (e) {
      err.textContent = e.message; err.hidden = false;
    } finally { create.disabled = false; }
  });
  box.append(h('p', { class: 'muted', text: `Send a link to a friend to invite them to ${s.name}.` }),
    h('div', { class: 'row' }, h('label', { class: 'small' }, 'Expire after', maxAge), h('label', { class: 'small' }, 'Max uses', maxUses),
      h('label', { class: 'small' }, temporary, ' Temporary membership')),
    err, h('div', { class: 'row' }, out, copy), create);
  return box;
}

export function inviteDialog() {
  openDialog({ title: `Invite friends to ${store.server ? store.server.name : ''}`, testid: 'invite-dialog', content: [inviteBox()], actions: [{ label: 'Done' }] });
}

export function settingsDialog() {
  const me = store.me || {};
  const dn = field({ label: 'Display name', name: 'display_name', value: me.display_name || '', maxlength: 32 });
  const av = field({ label: 'Avatar URL', name: 'avatar_url', value: me.avatar_url || '', type: 'url', placeholder: 'https://…' });
  const cs = field({ label: 'Custom status', name: 'custom_status', value: me.custom_status || '', maxlength: 128 });
  const profileMsg = h('p', { class: 'muted small', role: 'status', 'data-testid': 'profile-status' });
  const profile = h('form', { class: 'settings-section', 'aria-label': 'Profile', 'data-testid': 'profile-form' },
    h('h3', { text: 'My profile' }), dn.el, av.el, cs.el,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn primary', text: 'Save profile', 'data-testid': 'save-profile' }), profileMsg));
  profile.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(profile, {});
    const avatarUrl = av.input.value.trim();
    if (avatarUrl && !safeHttpUrl(avatarUrl)) { showFieldErrors(profile, { avatar_url: ['Use an http(s) URL.'] }); return; }
    profileMsg.textContent = 'Saving…';
    try {
      const u = await api.updateMe({ display_name: dn.input.value.trim() || null, avatar_url: avatarUrl || null, custom_status: cs.input.value.trim() || null });
      store.apply('USER_UPDATE', u);
      invalidate(['members', 'messages', 'userpanel', 'channels']);
      profileMsg.textContent = 'Saved.';
    } catch (err) {
      showFieldErrors(profile, err.errors || {});
      profileMsg.textContent = err.message;
    }
  });

  // Password change: the current password is required; every other session is logged out.
  const curPw = field({ label: 'Current password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const newPw = field({ label: 'New password', name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, maxlength: 128 });
  const passwordMsg = h('p', { class: 'muted small', role: 'status', 'data-testid': 'password-status' });
  const passwordForm = h('form', { class: 'settings-section', 'aria-label': 'Password', 'data-testid': 'password-form' },
    h('h3', { text: 'Password' }), curPw.el, newPw.el,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn primary', text: 'Change password', 'data-testid': 'change-password' }), passwordMsg));
  passwordForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFieldErrors(passwordForm, {});
    passwordMsg.textContent = 'Saving…';
    try {
      await api.updateMe({ password: curPw.input.value, new_password: newPw.input.value });
      curPw.input.value = '';
      newPw.input.value = '';
      passwordMsg.textContent = 'Password changed. Your other devices were logged out.';
      loadSessions();
    } catch (err) {
      showFieldErrors(passwordForm, err.errors || {});
      passwordMsg.textContent = err.message;
    }
  });

  const sessionsList = h('ul', { class: 'sessions', 'data-testid': 'sessions-list' });
  const loadSessions = async () => {
    clear(sessionsList).append(h('li', { class: 'muted', text: 'Loading…' }));
    try {
      const list = await api.sessions();
      clear(sessionsList);
      for (const s of list) {
        sessionsList.append(h('li', { class: 'session', 'data-testid': 'session', 'data-session-id': s.id, 'data-current': String(!!s.current) },
          h('div', {},
            h('div', { text: describeAgent(s.user_agent) }),
            h('div', { class: 'muted small', text: `${s.current ? 'This device · ' : ''}last active ${s.last_used_at ? new Date(s.last_used_at).toLocaleString() : 'unknown'} · since ${new Date(s.created_at).toLocaleDateString()}` })),
          s.current ? h('span', { class: 'badge', text: 'current' }) :
            h('button', { type: 'button', class: 'btn secondary small', text: 'Log out', 'aria-label': `Log out session ${describeAgent(s.user_agent)}`, 'data-testid': 'revoke-session', onclick: async () => {
              try { await api.deleteSession(s.id); loadSessions(); } catch (e) { toast(e.message, 'error'); }
            } })));
      }
      if (!list.length) sessionsList.append(h('li', { class: 'muted', text: 'No sessions.' }));
    } catch (e) {
      clear(sessionsList).append(h('li', { class: 'form-error', text: e.message }));
    }
  };
  loadSessions();

  openDialog({
    title: 'User settings', testid: 'settings-dialog', wide: true,
    content: [
      avatarSection(),
      profile,
      passwordForm,
      notificationsSection(),
      h('section', { class: 'settings-section', 'aria-label': 'Sessions' }, h('h3', { text: 'Sessions' }), sessionsList),
      h('section', { class: 'settings-section', 'aria-label': 'Invite' }, h('h3', { text: 'Invite people' }), inviteBox()),
      h('section', { class: 'settings-section' },
        h('button', { type: 'button', class: 'btn danger', text: 'Log out', 'data-testid': 'logout', onclick: async () => {
          document.querySelector('dialog[open]')?.close();
          await logout();
        } })),
    ],
    actions: [{ label: 'Close' }],
  });
}

function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = /Firefox\/[\d.]+/.exec(ua)?.[0] || /Edg\/[\d.]+/.exec(ua)?.[0] || /Chrom(e|ium)\/[\d]+/.exec(ua)?.[0] || /Safari\/[\d.]+/.exec(ua)?.[0] || ua.slice(0, 40);
  const os = /Windows|Mac OS X|Android|iPhone|Linux/.exec(ua)?.[0] || '';
  return os ? `${browser} on ${os}` : browser;
}
