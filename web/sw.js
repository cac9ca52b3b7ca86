// Confab's service worker (docs/pwa.md): the app shell — the page, its scripts, styles and
// icons — keeps working offline, so an installed Confab opens to its own "connecting…" state
// instead of the browser's error page. Network first: online, every file comes fresh from the
// server (a new version is never hidden behind a stale cache); the cached copy is the fallback.
// The API, the gateway, uploads and the vendored audio models are never touched here.
// It also shows Web Push notifications and opens their channel when one is clicked
// (docs/push.md).

const CACHE = 'confab-shell-v1';
const SHELL = ['/', '/css/app.css', '/js/app.js', '/manifest.webmanifest', '/icons/icon.svg', '/icons/icon-192.png'];
const SHELL_DIRS = ['/js/', '/css/', '/icons/'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

/** The cache key of a shell request, or null for what this worker leaves alone. Every page the
 * app routes itself (`/`, `/invite/CODE`, …) is the one index.html. */
function shellKey(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return null;
  if (request.mode === 'navigate') return url.pathname.startsWith('/api/') ? null : '/';
  if (url.pathname === '/manifest.webmanifest') return url.pathname;
  return SHELL_DIRS.some((d) => url.pathname.startsWith(d)) ? url.pathname : null;
}

// The page loaded before this worker controlled it: it sends the URLs it fetched then, so the
// whole module graph is cached from the first visit on (a fixed list here would drift).
self.addEventListener('message', (event) => {
  const d = event.data;
  if (!d || d.type !== 'cache-shell' || !Array.isArray(d.urls)) return;
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    for (const u of d.urls.slice(0, 500)) {
      let key;
      try { key = shellKey(new Request(u)); } catch { continue; }
      if (key && !(await cache.match(key))) await cache.add(key).catch(() => {});
    }
  })());
});

self.addEventListener('fetch', (event) => {
  const key = shellKey(event.request);
  if (key) event.respondWith(networkFirst(event.request, key));
});

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === 'basic') await cache.put(key, response.clone());
    return response;
  } catch (err) {
    const cached = await cache.match(key);
    if (cached) return cached;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Web Push (docs/push.md). The browser has already decrypted the payload (RFC 8291):
// {type, title, body, url, server_id, channel_id, message_id}.

self.addEventListener('push', (event) => {
  let p = {};
  try { p = event.data ? event.data.json() : {}; } catch { p = { body: event.data ? event.data.text() : '' }; }
  const title = typeof p.title === 'string' && p.title ? p.title : 'Confab';
  const url = typeof p.url === 'string' && p.url.startsWith('/') ? p.url : '/';
  event.waitUntil(self.registration.showNotification(title, {
    body: typeof p.body === 'string' ? p.body : '',
    icon: '/icons/icon-192.png',
    badge: '/icons/icon-192.png',
    // One notification per channel: a newer message replaces the older one.
    tag: p.channel_id ? `channel-${p.channel_id}` : `confab-${p.type || 'note'}`,
    renotify: !!p.channel_id,
    data: { url, channel_id: p.channel_id || null, message_id: p.message_id || null },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(openNotification(event.notification));
});

/** Closes the notification and shows its channel: in the open app when there is one. */
async function openNotification(notification) {
  notification.close();
  const url = new URL(notification.data?.url || '/', self.location.origin).href;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const open = windows.find((c) => new URL(c.url).origin === self.location.origin);
  if (open) {
    // The app is open: bring it forward and let it switch channels without reloading.
    await open.focus().catch(() => {});
    open.postMessage({ type: 'open-url', url });
    return;
  }
  await self.clients.openWindow(url);
}
