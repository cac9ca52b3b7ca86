// Notifications (docs/push.md): Web Push subscription for this browser, the per-server
// notification settings, and telling the gateway whether anyone is looking at this client
// (op 3's `afk`), so the server pushes only when the user is away.

import { api, store, gateway } from './context.js';
import { h, openDialog, toast } from './dom.js';
import { HOME } from './inbox.js';
import { selectServer, selectChannel } from './navigation.js';

const SUBSCRIBE_TIMEOUT_MS = 15_000;

/** The VAPID key as `pushManager.subscribe` wants it (base64url → bytes). */
function keyBytes(b64) {
  const s = b64.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function pushSupported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window && window.isSecureContext;
}

/** Subscribes this browser and registers the subscription with the server. */
export async function enablePush() {
  if (!pushSupported()) throw new Error('This browser cannot receive push notifications here (HTTPS is needed).');
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') throw new Error('Notifications are blocked for this site in the browser.');
  const reg = await navigator.serviceWorker.ready;
  const { public_key: key } = await api.get('/push/vapid-public-key');
  let sub = await reg.pushManager.getSubscription();
  // A subscription made with another server key cannot be reused.
  if (sub && sub.options?.applicationServerKey) {
    const old = new Uint8Array(sub.options.applicationServerKey);
    const want = keyBytes(key);
    if (old.length !== want.length || old.some((b, i) => b !== want[i])) { await sub.unsubscribe(); sub = null; }
  }
  if (!sub) {
    // A browser that cannot reach its push service may never answer: give up after a while.
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('The browser\'s push service did not answer. Try again later.')), SUBSCRIBE_TIMEOUT_MS));
    sub = await Promise.race([reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }), timeout]);
  }
  return api.post('/users/@me/push-subscriptions', sub.toJSON());
}

export async function disablePush() {
  const reg = await navigator.serviceWorker.ready;
  const sub = await reg.pushManager.getSubscription();
  if (!sub) return;
  await api.del(`/users/@me/push-subscriptions?endpoint=${encodeURIComponent(sub.endpoint)}`).catch(() => {});
  await sub.unsubscribe();
}

/** The "Notifications" section of user settings. */
export function notificationsSection() {
  const status = h('p', { class: 'muted small', role: 'status', 'data-testid': 'push-status' });
  const show = async () => {
    if (!pushSupported()) { status.textContent = 'Push notifications need HTTPS and a browser that supports them.'; return; }
    const reg = await navigator.serviceWorker.getRegistration();
    const sub = reg && await reg.pushManager.getSubscription().catch(() => null);
    status.textContent = sub && Notification.permission === 'granted'
      ? 'Push notifications are on for this browser.'
      : `Push notifications are off for this browser${Notification.permission === 'denied' ? ' (blocked in the browser\'s site settings)' : ''}.`;
  };
  const run = (fn, done) => async () => {
    status.textContent = 'Working…';
    try { await fn(); status.textContent = done; } catch (e) { status.textContent = e.message || String(e); }
  };
  show();
  return h('section', { class: 'settings-section', 'aria-label': 'Notifications', 'data-testid': 'notifications-section' },
    h('h3', { text: 'Notifications' }),
    h('p', { class: 'muted small', text: 'Get DMs, mentions and replies on this device while Confab is closed or in the background. Choose per server what notifies in the server\'s notification settings.' }),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'btn primary', text: 'Enable push notifications', 'data-testid': 'push-enable', onclick: run(enablePush, 'Push notifications are on for this browser.') }),
      h('button', { type: 'button', class: 'btn secondary', text: 'Send a test notification', 'data-testid': 'push-test', onclick: run(() => api.post('/users/@me/push-subscriptions/test'), 'Test notification sent.') }),
      h('button', { type: 'button', class: 'btn secondary', text: 'Turn off', 'data-testid': 'push-disable', onclick: run(disablePush, 'Push notifications are off for this browser.') })),
    status);
}

const MUTES = [['', 'Not muted'], ['3600', 'For 1 hour'], ['28800', 'For 8 hours'], ['86400', 'For 24 hours'], ['604800', 'For a week']];

/** Notification level, mute and @everyone for the current server. */
export async function serverNotificationsDialog() {
  const s = store.server;
  if (!s) return;
  let current = {};
  let all;
  try {
    all = await api.get('/users/@me/notification-settings');
    current = all.servers.find((x) => x.server_id === s.id) || {};
  } catch (e) { toast(e.message, 'error'); return; }
  const level = h('select', { name: 'level', 'data-testid': 'notify-level' },
    h('option', { value: '', text: 'Default (all messages in small servers, mentions in large ones)' }),
    h('option', { value: 'all', text: 'All messages' }),
    h('option', { value: 'mentions', text: 'Only @mentions' }),
    h('option', { value: 'nothing', text: 'Nothing' }));
  level.value = current.level || '';
  const muted = current.muted_until && new Date(current.muted_until) > new Date();
  const mute = h('select', { name: 'mute', 'data-testid': 'notify-mute' }, ...MUTES.map(([v, t]) => h('option', { value: v, text: t })));
  if (muted) mute.prepend(h('option', { value: 'keep', text: `Muted until ${new Date(current.muted_until).toLocaleString()}`, selected: true }));
  const everyone = h('input', { type: 'checkbox', name: 'suppress_everyone', 'data-testid': 'notify-suppress-everyone' });
  everyone.checked = !!current.suppress_everyone;
  // The open text channel of this server gets its own override (the level wins over the
  // server's), as Discord's channel notification settings.
  const ch = store.channel;
  const channel = ch && ch.server_id === s.id && ch.type !== 'voice' && ch.type !== 'category' ? ch : null;
  const chCurrent = (channel && all.channels.find((x) => x.channel_id === channel.id)) || {};
  const chLevel = channel ? levelSelect('notify-channel-level', 'Same as the server', chCurrent.level) : null;
  const chMute = channel ? muteSelect('notify-channel-mute', chCurrent.muted_until) : null;
  openDialog({
    title: `Notifications: ${s.name}`, testid: 'server-notifications-dialog',
    content: [
      h('label', { class: 'field' }, h('span', { text: 'Notify me of' }), level),
      h('label', { class: 'field' }, h('span', { text: 'Mute this server' }), mute),
      h('label', { class: 'check' }, everyone, h('span', { text: ' Suppress @everyone and @here' })),
      channel ? h('fieldset', { class: 'field', 'data-testid': 'notify-channel' },
        h('legend', { text: `#${channel.name}` }),
        h('label', { class: 'field' }, h('span', { text: 'Notify me of' }), chLevel),
        h('label', { class: 'field' }, h('span', { text: 'Mute this channel' }), chMute)) : null,
    ],
    actions: [
      { label: 'Cancel' },
      { label: 'Save', submit: true, onClick: async () => {
        // A refusal throws: the dialog shows it and stays open.
        await api.put(`/users/@me/servers/${s.id}/notification-settings`, { level: level.value || null, muted_until: muteUntil(mute, current.muted_until), suppress_everyone: everyone.checked });
        if (channel) {
          await api.put(`/users/@me/channels/${channel.id}/notification-settings`, { level: chLevel.value || null, muted_until: muteUntil(chMute, chCurrent.muted_until) });
        }
        toast('Notification settings saved.');
      } },
    ],
  });
}

function levelSelect(testid, defaultText, value) {
  const el = h('select', { 'data-testid': testid },
    h('option', { value: '', text: defaultText }),
    h('option', { value: 'all', text: 'All messages' }),
    h('option', { value: 'mentions', text: 'Only @mentions' }),
    h('option', { value: 'nothing', text: 'Nothing' }));
  el.value = value || '';
  return el;
}

function muteSelect(testid, until) {
  const el = h('select', { 'data-testid': testid }, ...MUTES.map(([v, t]) => h('option', { value: v, text: t })));
  if (until && new Date(until) > new Date()) el.prepend(h('option', { value: 'keep', text: `Muted until ${new Date(until).toLocaleString()}`, selected: true }));
  return el;
}

function muteUntil(select, current) {
  if (select.value === 'keep') return current;
  return select.value ? new Date(Date.now() + Number(select.value) * 1000).toISOString() : null;
}

// ---------------------------------------------------------------------------------------------
// My status (online, idle, do not disturb, invisible), chosen in the user panel and kept per
// browser; do not disturb also stops push notifications (docs/push.md).

const STATUS_KEY = 'confab.status';
export const STATUSES = [['online', 'Online'], ['idle', 'Idle'], ['dnd', 'Do Not Disturb'], ['invisible', 'Invisible']];

export function myStatus() {
  let s = null;
  try { s = localStorage.getItem(STATUS_KEY); } catch { /* no storage */ }
  return STATUSES.some(([v]) => v === s) ? s : 'online';
}

export function statusDialog() {
  const current = myStatus();
  const radios = STATUSES.map(([v, label]) => {
    const input = h('input', { type: 'radio', name: 'status', value: v, 'data-testid': `status-${v}` });
    input.checked = v === current;
    return h('label', { class: 'check' }, input, h('span', { class: `presence-dot inline ${v === 'invisible' ? 'offline' : v}` }), h('span', { text: ` ${label}` }));
  });
  openDialog({
    title: 'Set status', testid: 'status-dialog',
    content: [
      h('fieldset', { class: 'field' }, h('legend', { text: 'Status' }), ...radios),
      h('p', { class: 'muted small', text: 'Do Not Disturb silences push notifications. Invisible shows you offline to others.' }),
    ],
    actions: [
      { label: 'Cancel' },
      { label: 'Save', submit: true, onClick: async () => {
        const chosen = radios.map((l) => l.querySelector('input')).find((i) => i.checked);
        const status = chosen ? chosen.value : 'online';
        try { localStorage.setItem(STATUS_KEY, status); } catch { /* no storage */ }
        reportFocus(true);
        // The server tells everyone else; our own member-list entry follows at once.
        if (store.me) store.presences.set(store.me.id, status);
        store.emit('userpanel', 'members');
      } },
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// Focus: the server pushes to a user none of whose clients is in front of them.

let lastAfk = null;

function reportFocus(force = false) {
  if (gateway.status !== 'ready') return;
  const afk = !(document.visibilityState === 'visible' && document.hasFocus());
  if (afk === lastAfk && !force) return;
  lastAfk = afk;
  gateway.send(3, { status: myStatus(), afk });
}

export function initNotifications() {
  for (const ev of ['focus', 'blur']) window.addEventListener(ev, () => reportFocus());
  document.addEventListener('visibilitychange', () => reportFocus());
  // A new session starts focused on the server's side: say where we are.
  gateway.on('READY', () => reportFocus(true));
  gateway.on('RESUMED', () => reportFocus(true));
  // A notification clicked while the app is open (web/sw.js).
  navigator.serviceWorker?.addEventListener('message', (e) => {
    if (e.data?.type !== 'open-url') return;
    const u = new URL(e.data.url, location.origin);
    if (u.origin !== location.origin) return;
    history.replaceState(null, '', u.pathname);
    openLinkedChannel();
  });
}

/** `/channels/<server_id|@me>/<channel_id>` (a notification's link): open that channel. */
export function openLinkedChannel() {
  const m = /^\/channels\/(@me|\d+)\/(\d+)$/.exec(location.pathname);
  if (!m) return;
  history.replaceState(null, '', '/');
  const [, server, channel] = m;
  if (server === '@me') {
    if (!store.privateChannels.has(channel)) return;
    selectServer(HOME);
  } else {
    if (!store.servers.has(server)) return;
    selectServer(server);
  }
  selectChannel(channel);
}
