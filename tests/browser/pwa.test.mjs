// The installable app: Chromium finds the manifest and deems the app installable, the service
// worker caches the app shell, and with the network gone a reload opens Confab's own
// "connecting" state (not the browser's error page), which reconnects by itself once online.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, registerViaUi, uniqueName, waitFor } from './lib.mjs';

let server;
let A;

before(async () => {
  server = await startServer();
  A = await launchBrowser();
});

after(async () => {
  await A?.close();
  await server?.stop();
});

test('Chromium reads the manifest and finds the app installable', async () => {
  const { page, context } = A;
  await registerViaUi(page, server.url, uniqueName('pwa'));
  const manifest = await page.evaluate(async () => {
    const href = document.querySelector('link[rel="manifest"]').href;
    const r = await fetch(href);
    return { type: r.headers.get('content-type'), body: await r.json() };
  });
  assert.match(manifest.type, /^application\/manifest\+json/);
  assert.equal(manifest.body.display, 'standalone');
  // Each PNG icon decodes to the size it declares.
  const pngs = manifest.body.icons.filter((i) => i.type === 'image/png');
  assert.deepEqual(pngs.map((i) => i.sizes).sort(), ['192x192', '512x512']);
  for (const icon of pngs) {
    const size = await page.evaluate(async (src) => {
      const bmp = await createImageBitmap(await (await fetch(src)).blob());
      return `${bmp.width}x${bmp.height}`;
    }, icon.src);
    assert.equal(size, icon.sizes, icon.src);
  }
  const cdp = await context.newCDPSession(page);
  const parsed = await cdp.send('Page.getAppManifest');
  assert.deepEqual(parsed.errors, [], 'the manifest parses without errors');
  await waitFor(async () => (await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration();
    return reg && reg.active && reg.active.state === 'activated';
  })), { message: 'the service worker is active' });
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, [], 'Chromium deems Confab installable');
});

test('offline, a reload opens the cached app, which reconnects once the network is back', async () => {
  const { page, context } = A;
  // Every module the app loaded before the worker existed is cached for the next start.
  await waitFor(() => page.evaluate(async () => {
    const cache = await caches.open('confab-shell-v1');
    const want = ['/', '/js/app.js', '/js/context.js', '/js/gateway.js', '/css/app.css'];
    return (await Promise.all(want.map((u) => cache.match(u)))).every(Boolean);
  }), { message: 'the app shell is cached' });
  await context.setOffline(true);
  try {
    await page.reload({ waitUntil: 'domcontentloaded' });
    assert.ok(!page.url().startsWith('chrome-error:'), `offline reload shows ${page.url()}`);
    const status = page.getByTestId('connection-status');
    await status.waitFor({ state: 'visible', timeout: 15_000 });
    assert.match(await status.textContent(), /Connecting|Reconnecting|Connection lost/);
    assert.equal(await page.evaluate(() => window.confab.gateway.status === 'ready'), false);
  } finally {
    await context.setOffline(false);
  }
  await page.waitForFunction(() => window.confab.gateway.status === 'ready', null, { timeout: 45_000 });
  await page.getByTestId('connection-status').waitFor({ state: 'hidden', timeout: 5_000 });
});

test('API responses are never served from the cache', async () => {
  const cached = await A.page.evaluate(async () => {
    const cache = await caches.open('confab-shell-v1');
    return (await cache.keys()).map((r) => new URL(r.url).pathname).filter((p) => p.startsWith('/api/'));
  });
  assert.deepEqual(cached, []);
});
