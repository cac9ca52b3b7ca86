// Message search in real Chromium: type a query in the channel header's search box, see the
// results with the matched words marked, click one in another channel, and land on the message
// in its context (history loaded around it, older than the newest page), scrolled into view and
// highlighted; then back to the present.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, registerViaUi, createServerViaUi, tokenOf, rest, uniqueName, waitFor, snap } from './lib.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('search, open a result in its context, highlighted, then jump to the present', async () => {
  const { page, consoleErrors } = browser;
  await registerViaUi(page, server.url, uniqueName('seek'));
  await createServerViaUi(page, 'Search test');
  const token = await tokenOf(page);
  const serverId = await page.evaluate(() => window.confab.store.currentServerId);
  const channels = await rest(server.url, token, 'GET', `/servers/${serverId}/channels`);
  const general = channels.find((c) => c.name === 'general').id;
  const other = (await rest(server.url, token, 'POST', `/servers/${serverId}/channels`, { name: 'other', type: 'text' })).id;

  // The needle is old: 70 messages follow it, more than the newest page (50) holds.
  for (let i = 0; i < 10; i++) await rest(server.url, token, 'POST', `/channels/${general}/messages`, { content: `early filler ${i}` });
  const needle = await rest(server.url, token, 'POST', `/channels/${general}/messages`, { content: 'the shiny needle is in this haystack' });
  for (let i = 0; i < 70; i++) await rest(server.url, token, 'POST', `/channels/${general}/messages`, { content: `late filler ${i}` });
  const newest = (await rest(server.url, token, 'GET', `/channels/${general}/messages?limit=1`))[0];
  await rest(server.url, token, 'POST', `/channels/${other}/messages`, { content: 'another needle, elsewhere' });

  // Read #other, then reload: #general is not loaded when the search runs.
  await page.locator(`[data-testid="channel-link"][data-channel-name="other"]`).click();
  await page.getByTestId('channel-title').filter({ hasText: 'other' }).waitFor();
  await page.reload();
  await page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  await page.getByTestId('channel-title').filter({ hasText: 'other' }).waitFor();

  const box = page.getByTestId('search-input');
  await box.fill('needle');
  await box.press('Enter');
  const results = page.getByTestId('search-result');
  await waitFor(async () => (await results.count()) === 2, { message: 'two results' });
  // Newest first; the matched word is marked in each.
  assert.equal(await results.nth(0).getAttribute('data-message-id') === needle.id, false);
  assert.equal(await results.nth(1).getAttribute('data-message-id'), needle.id);
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(await results.nth(i).locator('mark.search-match').allTextContents(), ['needle']);
  }
  assert.match(await results.nth(1).textContent(), /#general/);
  assert.match(await page.getByTestId('search-status').textContent(), /2 results/);

  // A query with a bad filter says why, in the panel.
  await box.fill('has:video needle');
  await box.press('Enter');
  await page.getByTestId('search-status').filter({ hasText: /has: expects link, file or image/ }).waitFor();
  assert.equal(await results.count(), 0);

  // Filters from the box: only #general's.
  await box.fill('needle in:general');
  await box.press('Enter');
  await waitFor(async () => (await results.count()) === 1 && (await results.nth(0).getAttribute('data-message-id')) === needle.id,
    { message: 'the in:general result' });

  // Open it: #general, scrolled to the needle, highlighted, with its neighbours around it.
  await results.nth(0).click();
  await page.getByTestId('channel-title').filter({ hasText: 'general' }).waitFor();
  const hit = page.locator(`[data-testid="message"][data-message-id="${needle.id}"]`);
  await hit.waitFor();
  await waitFor(() => hit.evaluate((el) => el.classList.contains('search-hit')), { message: 'the highlight' });
  const inView = () => hit.evaluate((el) => {
    const list = document.querySelector('[data-testid="message-list"]').getBoundingClientRect();
    const r = el.getBoundingClientRect();
    return r.top >= list.top - 1 && r.bottom <= list.bottom + 1;
  });
  await waitFor(inView, { message: 'the needle scrolled into view' });
  const shown = await page.getByTestId('message-content').allTextContents();
  assert.ok(shown.some((t) => t.includes('early filler 9')), 'the message before it is shown');
  assert.ok(shown.some((t) => t.includes('late filler 0')), 'the message after it is shown');
  assert.ok(!shown.some((t) => t.includes(newest.content)), 'the newest message is not (a window around the needle)');
  await snap(page, 'search-result-in-context');
  // The highlight fades after a few seconds.
  await waitFor(() => hit.evaluate((el) => !el.classList.contains('search-hit')), { timeout: 10_000, message: 'the highlight to fade' });

  // Back to the present: the newest message, at the bottom.
  await page.getByTestId('jump-present').getByRole('button', { name: 'Jump to present' }).click();
  await page.locator(`[data-testid="message"][data-message-id="${newest.id}"]`).waitFor();
  assert.equal(await page.getByTestId('jump-present').count(), 0);

  // Escape closes the results.
  await box.focus();
  await box.press('Escape');
  assert.equal(await page.getByTestId('search-results').count(), 0);
  // The one refused request above is the browser's only complaint.
  assert.deepEqual(consoleErrors.filter((e) => !/status of 400 .*messages\/search\?q=has%3Avideo/.test(e)), []);
});
