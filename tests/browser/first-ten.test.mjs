// The first ten minutes of a new user (issue "The first ten minutes"): the welcome pane, mentions
// typed with an autocomplete and shown as names, the message length limit and errors that say
// what to do, "(edited)" inline, the server header, the keyboard (Up to edit, Escape, Ctrl+K, the
// skip link), axe-core on the main screens, a phone-width window with drawers, reload while in
// voice, and one's own camera kept in view during a screen share. No console errors throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createInviteViaUi, joinViaUi, tokenOf, rest, uniqueName,
  waitFor, snap, axeViolations } from './lib.mjs';

let server;
let A;
let B;
const userA = uniqueName('ann');
const userB = uniqueName('bob');
const serverName = `Weekend Study Group ${uniqueName('')}`;
let ids = {};
let link;

const msgs = (page) => page.getByTestId('message-list').getByTestId('message');
const msgByText = (page, text) => msgs(page).filter({ has: page.getByTestId('message-content').filter({ hasText: text }) });
const composer = (page) => page.getByTestId('composer');

async function send(page, text) {
  await composer(page).fill(text);
  await composer(page).press('Enter');
}

async function expectAxeClean(page, label) {
  const v = await axeViolations(page);
  if (process.env.AXE_LOG_ONLY && v.length) { console.log(`AXE ${label}:`, v); return; }
  assert.deepEqual(v, [], label);
}

/** The console errors of a browser so far, minus those a test provoked on purpose. */
function assertNoConsoleErrors(b, label) {
  assert.deepEqual(b.consoleErrors, [], `${label}: console errors in normal use`);
  assert.deepEqual(b.errors, [], `${label}: page errors`);
}

before(async () => {
  server = await startServer();
  A = await launchBrowser();
  B = await launchBrowser();
});

after(async () => {
  await A?.close();
  await B?.close();
  await server?.stop();
});

test('after registering: a welcome pane with "Create a server" and "Join with an invite"', async () => {
  await A.page.goto(server.url);
  await A.page.getByRole('button', { name: 'Log in', exact: true }).waitFor();
  await expectAxeClean(A.page, 'axe: login screen');
  await registerViaUi(A.page, server.url, userA);
  const welcome = A.page.getByTestId('welcome');
  await welcome.waitFor();
  await welcome.getByRole('heading', { name: `Welcome to Confab, ${userA}!` }).waitFor();
  await welcome.getByRole('button', { name: 'Join with an invite' }).waitFor();
  // The rail's join button has a name and, on hover, a tooltip that says what it does.
  const join = A.page.getByRole('button', { name: 'Join a server', exact: true });
  assert.equal(await join.getAttribute('data-testid'), 'join-server');
  await join.hover();
  await A.page.getByTestId('tooltip').filter({ hasText: 'Join a server with an invite' }).waitFor();
  await A.page.mouse.move(600, 400);
  await expectAxeClean(A.page, 'axe: welcome screen');
  await snap(A.page, 'welcome');

  await welcome.getByRole('button', { name: 'Create a server' }).click();
  const dlg = A.page.getByTestId('create-server-dialog');
  await dlg.getByLabel('Server name').waitFor();
  await expectAxeClean(A.page, 'axe: create server dialog');
  await dlg.getByLabel('Server name').fill(serverName);
  await dlg.getByRole('button', { name: 'Create', exact: true }).click();
  await A.page.getByTestId('server-name').filter({ hasText: serverName }).waitFor({ timeout: 15_000 });
  await A.page.locator('[data-testid="channel-link"][data-channel-name="general"]').waitFor();
  assert.equal(await welcome.isHidden(), true, 'the welcome pane goes once in a server');

  link = await createInviteViaUi(A.page);
  await registerViaUi(B.page, server.url, userB);
  // B joins through the welcome pane's button.
  await B.page.getByTestId('welcome').getByRole('button', { name: 'Join with an invite' }).click();
  const jd = B.page.getByTestId('join-server-dialog');
  await jd.getByLabel('Invite link or code').fill(link);
  await jd.getByRole('button', { name: 'Join server' }).click();
  await B.page.getByTestId('server-name').filter({ hasText: serverName }).waitFor({ timeout: 15_000 });
  await A.page.getByTestId('member-list').getByText(userB).waitFor({ timeout: 10_000 });

  ids = await A.page.evaluate(() => {
    const s = window.confab.store.server;
    const general = [...s.channels.values()].find((c) => c.name === 'general');
    const voice = [...s.channels.values()].find((c) => c.type === 'voice');
    return { server: s.id, general: general.id, voice: voice.id, a: window.confab.store.me.id };
  });
  ids.b = await B.page.evaluate(() => window.confab.store.me.id);
});

test('the server header shows the whole name beside the owner\'s six actions (notifications among them)', async () => {
  const h2 = A.page.getByTestId('server-name');
  const fit = await h2.evaluate((el) => ({ sw: el.scrollWidth, cw: el.clientWidth, sh: el.scrollHeight, ch: el.clientHeight, text: el.innerText }));
  assert.ok(fit.sw <= fit.cw + 1 && fit.sh <= fit.ch + 1, `server name cut: ${JSON.stringify(fit)}`);
  assert.equal(await A.page.getByTestId('server-header').locator('.header-actions button').count(), 6);
});

test('mentions: @ lists members (keyboard and mouse), # lists channels, tokens go out as <@id>', async () => {
  const box = composer(B.page);
  const list = B.page.getByTestId('mention-autocomplete');
  const option = (kind, id) => list.locator(`[data-testid="mention-option"][data-kind="${kind}"][data-id="${id}"]`);
  await box.click();
  await box.pressSequentially(`hi @${userA.slice(0, 3)}`);
  await option('user', ids.a).waitFor();
  // A plain member may not ping everyone: no @everyone in the list.
  await box.fill('');
  await box.pressSequentially('@ev');
  await waitFor(async () => (await list.isHidden()) || (await option('everyone', 'everyone').count()) === 0, { message: 'no @everyone for a member' });
  assert.equal(await option('everyone', 'everyone').count(), 0);
  // Keyboard: ↓ ↑ move, Enter picks (and does not send).
  await box.fill('');
  await box.pressSequentially(`hi @${userA.slice(0, 3)}`);
  await option('user', ids.a).waitFor();
  const n = await list.getByTestId('mention-option').count();
  await box.press('ArrowDown');
  await box.press('ArrowUp');
  assert.equal(await option('user', ids.a).getAttribute('aria-selected'), 'true');
  assert.equal(await box.getAttribute('aria-activedescendant'), await option('user', ids.a).getAttribute('id'));
  await box.press('Enter');
  assert.equal(await box.inputValue(), `hi <@${ids.a}> `);
  assert.ok(await list.isHidden(), `list closed after picking (had ${n})`);
  // # for channels, Tab picks.
  await box.pressSequentially('see #gen');
  await option('channel', ids.general).waitFor();
  await box.press('Tab');
  assert.equal(await box.inputValue(), `hi <@${ids.a}> see <#${ids.general}> `);
  // Escape closes the list without touching the text.
  await box.pressSequentially('@');
  await list.waitFor();
  await box.press('Escape');
  assert.ok(await list.isHidden());
  // Mouse: click an option.
  await box.pressSequentially(userB.slice(0, 3));
  await option('user', ids.b).click();
  assert.equal(await box.inputValue(), `hi <@${ids.a}> see <#${ids.general}> <@${ids.b}> `);
  await snap(B.page, 'mention-autocomplete-channel');
  await box.pressSequentially('and @');
  await list.waitFor();
  await snap(B.page, 'mention-autocomplete');
  await box.press('Escape');
  await box.press('Backspace');
  await box.press('Enter');

  // Both render names, never the digits; A's copy is highlighted as mentioning A.
  for (const page of [A.page, B.page]) {
    const m = msgByText(page, `@${userA}`).last();
    await m.waitFor({ timeout: 10_000 });
    const content = m.getByTestId('message-content');
    await content.getByTestId('mention').filter({ hasText: `#general` }).waitFor();
    const text = await content.innerText();
    for (const id of [ids.a, ids.b, ids.general]) assert.ok(!text.includes(id), `raw id ${id} shown: ${text}`);
    assert.match(text, new RegExp(`@${userA} see #general @${userB}`));
  }
  await msgs(A.page).last().and(A.page.locator('.mentions-me')).waitFor();
  const sent = await rest(server.url, await tokenOf(A.page), 'GET', `/channels/${ids.general}/messages?limit=1`);
  assert.deepEqual(sent[0].mentions.sort(), [ids.a, ids.b].sort());
  // A channel mention is a link to the channel.
  await A.page.getByTestId('mention').filter({ hasText: '#general' }).last().click();
  await A.page.getByTestId('channel-title').filter({ hasText: 'general' }).waitFor();
});

test('mentions: @everyone for those allowed, roles, unknown ids, @name typed by hand, no markup', async () => {
  const tokenA = await tokenOf(A.page);
  // The owner may mention everyone: @everyone and @here are offered.
  const box = composer(A.page);
  await box.click();
  await box.pressSequentially('@ev');
  await A.page.getByTestId('mention-autocomplete').locator('[data-kind="everyone"]').waitFor();
  await box.press('Enter');
  assert.equal(await box.inputValue(), '@everyone ');
  await box.fill('');

  const role = await rest(server.url, tokenA, 'POST', `/servers/${ids.server}/roles`, { name: 'reviewers', color: 0x3ba55c, mentionable: true });
  await rest(server.url, tokenA, 'PUT', `/servers/${ids.server}/members/${ids.b}/roles/${role.id}`);
  // A display name that looks like markup stays text.
  await rest(server.url, await tokenOf(B.page), 'PATCH', '/users/@me', { display_name: '<img src=x onerror=alert(1)>' });
  await send(A.page, `<@&${role.id}> please look, <@${ids.b}>. Unknown: <@1234567890123> <@&1234567890124> <#1234567890125>`);
  const m = msgByText(B.page, 'please look').last();
  await m.waitFor({ timeout: 10_000 });
  const mentions = m.getByTestId('mention');
  await waitFor(async () => (await mentions.count()) === 5, { message: 'five mentions' });
  const shown = await mentions.evaluateAll((els) => els.map((e) => [e.dataset.mentionKind, e.textContent, e.classList.contains('unknown')]));
  assert.deepEqual(shown, [
    ['role', '@reviewers', false], ['user', '@<img src=x onerror=alert(1)>', false],
    ['user', '@unknown-user', true], ['role', '@unknown-role', true], ['channel', '#unknown-channel', true],
  ]);
  assert.equal(await m.locator('img').count(), 0, 'no element from a display name');
  assert.match(await m.getAttribute('class'), /mentions-me/, 'B is mentioned (role and direct)');
  const shownText = await m.getByTestId('message-content').innerText();
  for (const id of [role.id, ids.b, '1234567890123', '1234567890124', '1234567890125']) assert.ok(!shownText.includes(id), `raw id ${id} shown: ${shownText}`);

  // @username typed without the list still mentions that person.
  await send(B.page, `thanks @${userA} !`);
  await msgByText(A.page, 'thanks').getByTestId('mention').filter({ hasText: `@${userA}` }).waitFor({ timeout: 10_000 });
  const last = await rest(server.url, tokenA, 'GET', `/channels/${ids.general}/messages?limit=1`);
  assert.deepEqual(last[0].mentions, [ids.a]);
  assert.equal(last[0].content, `thanks <@${ids.a}> !`);
  // The same rule, case by case: a sentence's full stop, code, e-mail addresses and unknown names.
  const linked = await A.page.evaluate(async ([a]) => {
    const m = await import('/js/mentions.js');
    return [`ok @${a}.`, `\`@${a}\` and @${a}`, `mail x@${a}.example`, '@nobody-here', `(@${a.toUpperCase()})`].map((t) => m.linkPlainMentions(t));
  }, [userA]);
  assert.deepEqual(linked, [`ok <@${ids.a}>.`, `\`@${userA}\` and <@${ids.a}>`, `mail x@${userA}.example`, '@nobody-here', `(<@${ids.a}>)`]);
  await rest(server.url, await tokenOf(B.page), 'PATCH', '/users/@me', { display_name: null });
  await snap(A.page, 'mentions');
});

test('message length: a live counter near the limit; over it, nothing is sent and the limit is named', async () => {
  const box = composer(B.page);
  const counter = B.page.getByTestId('char-counter');
  await box.fill('x'.repeat(100));
  assert.ok(await counter.isHidden(), 'no counter far from the limit');
  await box.fill('y'.repeat(3700));
  await counter.filter({ hasText: '300' }).waitFor();
  await box.fill('z'.repeat(4120));
  await counter.filter({ hasText: '-120' }).waitFor();
  assert.match(await counter.getAttribute('class'), /over/);
  const before = await msgs(B.page).count();
  await box.press('Enter');
  const err = B.page.getByTestId('composer-error');
  await err.waitFor();
  assert.match(await err.innerText(), /120 characters over the 4,000-character limit\. Shorten it/);
  assert.equal((await box.inputValue()).length, 4120, 'the text stays to be shortened');
  assert.equal(await msgs(B.page).count(), before, 'nothing sent');
  await snap(B.page, 'message-too-long');
  await box.fill('z'.repeat(3990));
  await err.waitFor({ state: 'hidden' });
  await box.fill('');
});

test('REST errors shown to the user say what to do', async () => {
  const box = composer(B.page);
  const err = B.page.getByTestId('composer-error');
  const cases = [
    [{ status: 403, body: { code: 50013, message: 'you may not send messages here' } }, /You may not send messages here\. Ask a server admin for the permission/],
    [{ status: 429, body: { code: 42900, message: 'rate limited' }, headers: { 'Retry-After': '7' } }, /too fast\. Wait 7 seconds and try again/],
    [{ status: 500, body: { code: 0, message: 'internal server error' } }, /server had a problem \(HTTP 500\)\. Try again in a moment/],
    [{ status: 400, body: { code: 50035, message: 'invalid form body', errors: { content: ['must be at most 4000 characters'] } } }, /The message must be at most 4000 characters\. Change it and try again/],
    ['abort', /Cannot reach the server\. Check your internet connection/],
  ];
  const provoked = B.consoleErrors.length;
  for (const [reply, expected] of cases) {
    await B.page.route('**/api/v1/channels/*/messages', (route) => (route.request().method() !== 'POST' ? route.fallback()
      : reply === 'abort' ? route.abort()
        : route.fulfill({ status: reply.status, contentType: 'application/json', headers: reply.headers || {}, body: JSON.stringify(reply.body) })));
    await send(B.page, 'this one fails');
    await err.filter({ hasText: expected }).waitFor({ timeout: 10_000 });
    assert.match(await err.innerText(), /^Message not sent: /);
    assert.equal(await box.inputValue(), 'this one fails', 'the text is kept to retry');
    await B.page.unroute('**/api/v1/channels/*/messages');
    await box.fill('');
  }
  // Those failures were provoked: the browser logs each failed request; drop just those.
  B.consoleErrors.splice(provoked);
  // A wrong password says what to do too.
  const C = await launchBrowser();
  try {
    await C.page.goto(server.url);
    await C.page.getByLabel('Username').fill(userA);
    await C.page.getByLabel('Password').fill('wrong password here');
    await C.page.getByRole('button', { name: 'Log in', exact: true }).click();
    await C.page.getByTestId('auth-error').filter({ hasText: /Invalid username or password\. Check them and try again/ }).waitFor();
  } finally { await C.close(); }
});

test('"(edited)" sits at the end of the text; Up edits one\'s last message, Escape cancels', async () => {
  await send(B.page, 'first draft');
  const m = msgByText(B.page, 'first draft').last();
  await m.locator(':scope:not(.pending)').waitFor({ timeout: 10_000 });
  const box = composer(B.page);
  await box.focus();
  await box.press('ArrowUp');
  const edit = B.page.getByTestId('edit-input');
  await edit.waitFor();
  assert.equal(await edit.inputValue(), 'first draft');
  await edit.press('Escape');
  await edit.waitFor({ state: 'detached' });
  assert.equal(await B.page.evaluate(() => document.activeElement.dataset.testid), 'composer', 'focus back in the composer');
  await box.press('ArrowUp');
  await edit.fill('second draft for');
  // The edit box has the autocomplete too: Enter picks, the next Enter saves.
  await edit.pressSequentially(` @${userA.slice(0, 4)}`);
  await B.page.locator('.edit-wrap [data-testid="mention-option"]').first().waitFor();
  await edit.press('Enter');
  assert.equal(await edit.inputValue(), `second draft for <@${ids.a}> `);
  await edit.press('Enter');
  const edited = msgByText(B.page, 'second draft').last().getByTestId('edited-mark');
  await edited.waitFor({ timeout: 10_000 });
  const pos = await edited.evaluate((el) => {
    const line = el.closest('.md-p') || el.parentElement;
    const a = el.getBoundingClientRect();
    const first = line.getClientRects()[0];
    return { markTop: a.top, lineTop: first.top, lines: line.getClientRects().length, lineHeight: first.height };
  });
  assert.ok(Math.abs(pos.markTop - pos.lineTop) < pos.lineHeight / 2, `"(edited)" on its own line: ${JSON.stringify(pos)}`);
  await snap(B.page, 'edited-inline');
});

test('keyboard: Ctrl+K switches to channels and DMs; the skip link; landmarks; axe on the chat', async () => {
  // A DM between A and B exists once one side opens it.
  await rest(server.url, await tokenOf(A.page), 'POST', '/users/@me/channels', { recipient_id: ids.b });
  await rest(server.url, await tokenOf(A.page), 'POST', `/servers/${ids.server}/channels`, { name: 'homework-help', type: 'text' });
  const page = A.page;
  await page.locator('[data-testid="channel-link"][data-channel-name="homework-help"]').waitFor();
  await page.keyboard.press('Control+k');
  const sw = page.getByTestId('quick-switcher');
  await sw.waitFor();
  await page.keyboard.type('homew');
  await sw.locator('[data-testid="switcher-option"][aria-selected="true"]').filter({ hasText: 'homework-help' }).waitFor();
  await expectAxeClean(page, 'axe: quick switcher');
  await snap(page, 'quick-switcher');
  await page.keyboard.press('Enter');
  await page.getByTestId('channel-title').filter({ hasText: 'homework-help' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'composer');
  // To the DM, by the other person's name.
  await page.keyboard.press('Control+k');
  await page.keyboard.type(userB.slice(0, 4));
  await sw.locator('[data-testid="switcher-option"][data-kind="dm"]').waitFor();
  await page.keyboard.press('Enter');
  await page.getByTestId('channel-title').filter({ hasText: `@${userB}` }).waitFor();
  await expectAxeClean(page, 'axe: direct message');
  await page.getByTestId('friends-link').click();
  await page.getByTestId('friends-page').waitFor();
  await expectAxeClean(page, 'axe: friends page');
  await page.keyboard.press('Control+k');
  await page.keyboard.type(userB.slice(0, 4));
  await sw.locator('[data-testid="switcher-option"][data-kind="dm"]').waitFor();
  await page.keyboard.press('Enter');
  await page.getByTestId('channel-title').filter({ hasText: `@${userB}` }).waitFor();
  // Picking closes the switcher; the next Ctrl+K must find it closed, not still closing.
  await sw.waitFor({ state: 'detached' });
  // Escape closes it without going anywhere.
  await page.keyboard.press('Control+k');
  await sw.waitFor();
  await page.keyboard.press('Escape');
  await sw.waitFor({ state: 'detached' });
  await page.getByTestId('channel-title').filter({ hasText: `@${userB}` }).waitFor();

  // Back to the server by keyboard: the first Tab stop skips to the message box.
  await page.keyboard.press('Control+k');
  await page.keyboard.type('general');
  await page.keyboard.press('Enter');
  await page.getByTestId('channel-title').filter({ hasText: 'general' }).waitFor();
  const firstTabStop = await page.evaluate(() => [...document.querySelectorAll('#app button, #app [href], #app input, #app textarea, #app select, #app [tabindex]')]
    .find((e) => e.tabIndex >= 0 && !e.disabled)?.dataset.testid);
  assert.equal(firstTabStop, 'skip-link');
  await page.getByTestId('skip-link').focus();
  assert.ok(await page.getByTestId('skip-link').isVisible(), 'the skip link shows when focused');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'composer');
  // A message's actions are in the Tab order, and show while focused.
  await page.getByTestId('message-list').focus();
  let reached = null;
  for (let i = 0; i < 15 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => {
      const e = document.activeElement;
      const bar = e && e.closest('.msg-actions');
      return bar ? { label: e.getAttribute('aria-label'), opacity: getComputedStyle(bar).opacity } : null;
    });
  }
  assert.ok(reached, 'message actions reachable with Tab');
  assert.equal(reached.opacity, '1', `focused actions visible: ${JSON.stringify(reached)}`);
  // Landmarks a screen reader lists.
  const landmarks = await page.evaluate(() => [...document.querySelectorAll('main, nav, aside, [role="region"]:not([hidden])')]
    .filter((e) => !e.hidden).map((e) => `${e.tagName.toLowerCase()}:${e.getAttribute('aria-label') || ''}`));
  for (const want of ['nav:Servers', 'nav:Channels', 'main:', 'aside:Members']) assert.ok(landmarks.includes(want), `landmark ${want} in ${landmarks}`);
  await expectAxeClean(page, 'axe: chat screen');
  assertNoConsoleErrors(A, 'A');
  assertNoConsoleErrors(B, 'B');
});

test('a 390 px window: channel and member lists are drawers; chat and voice controls usable', async () => {
  const page = B.page;
  await page.setViewportSize({ width: 390, height: 844 });
  const noOverflow = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth && document.body.scrollWidth <= window.innerWidth);
  await page.getByTestId('channel-list').waitFor({ state: 'hidden' });
  assert.ok(await noOverflow(), 'no sideways scrolling');
  const box = composer(page);
  const r = await box.boundingBox();
  assert.ok(r && r.x >= 0 && r.x + r.width <= 390 && r.width > 200, `composer fits: ${JSON.stringify(r)}`);
  await send(page, 'typed on a phone');
  await msgByText(A.page, 'typed on a phone').waitFor({ timeout: 10_000 });
  await snap(page, 'narrow-chat');
  await expectAxeClean(page, 'axe: narrow chat');

  // Channel drawer: opens from the menu button, closes on a pick (and on Escape).
  await page.getByTestId('menu-button').click();
  await page.getByTestId('channel-list').waitFor();
  assert.equal(await page.getByTestId('menu-button').getAttribute('aria-expanded'), 'true');
  await page.getByTestId('server-list').waitFor();
  await snap(page, 'narrow-channels');
  await page.keyboard.press('Escape');
  await page.getByTestId('channel-list').waitFor({ state: 'hidden' });
  await page.getByTestId('menu-button').click();
  await page.locator('[data-testid="channel-link"][data-channel-name="homework-help"]').click();
  await page.getByTestId('channel-title').filter({ hasText: 'homework-help' }).waitFor();
  await page.getByTestId('channel-list').waitFor({ state: 'hidden' });

  // Member drawer.
  await page.getByTestId('members-button').click();
  const members = page.getByTestId('member-list');
  await members.getByText(userA).waitFor();
  const mr = await members.boundingBox();
  assert.ok(mr.x >= 0 && mr.x + mr.width <= 390.5, `member drawer on screen: ${JSON.stringify(mr)}`);
  await snap(page, 'narrow-members');
  await page.getByTestId('drawer-backdrop').click({ position: { x: 20, y: 400 } });
  await members.waitFor({ state: 'hidden' });

  // Voice from the drawer: the controls are on screen and work.
  await page.getByTestId('menu-button').click();
  await page.locator(`[data-testid="channel-link"][data-channel-id="${ids.voice}"]`).click();
  await page.locator('[data-testid="voice-state"][data-state="connected"]').waitFor({ timeout: 20_000 });
  const mute = page.getByTestId('voice-mute');
  const mb = await mute.boundingBox();
  assert.ok(mb && mb.x >= 0 && mb.x + mb.width <= 390 && mb.y + mb.height <= 844 && mb.height >= 32, `mute button reachable: ${JSON.stringify(mb)}`);
  await mute.click();
  assert.equal(await mute.getAttribute('aria-pressed'), 'true');
  await snap(page, 'narrow-voice');
  await expectAxeClean(page, 'axe: narrow voice');
  // With the drawer closed, a bar above the chat says one is in voice and brings the controls back.
  await page.keyboard.press('Escape');
  await page.getByTestId('channel-list').waitFor({ state: 'hidden' });
  const bar = page.getByTestId('voice-bar');
  await bar.filter({ hasText: 'General · muted' }).waitFor();
  await snap(page, 'narrow-voice-bar');
  await bar.click();
  await page.getByTestId('channel-list').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'voice-mute');
  await mute.click();
  await page.getByTestId('voice-leave').click();
  await page.getByTestId('voice-panel').waitFor({ state: 'hidden' });
  await page.keyboard.press('Escape');
  await page.setViewportSize({ width: 1280, height: 800 });
  assertNoConsoleErrors(B, 'B (narrow)');
});

test('reload while in voice offers to rejoin the channel', async () => {
  const page = B.page;
  await page.locator(`[data-testid="channel-link"][data-channel-id="${ids.voice}"]`).click();
  await page.locator('[data-testid="voice-state"][data-state="connected"]').waitFor({ timeout: 20_000 });
  await page.reload();
  await page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  const offer = page.getByTestId('rejoin-voice');
  await offer.filter({ hasText: 'General' }).waitFor({ timeout: 10_000 });
  await snap(page, 'rejoin-voice');
  await offer.getByRole('button', { name: 'Rejoin voice' }).click();
  await page.locator('[data-testid="voice-state"][data-state="connected"]').waitFor({ timeout: 20_000 });
  await offer.waitFor({ state: 'hidden' });
  // Left on purpose: no offer after the next reload.
  await page.getByTestId('voice-leave').click();
  await page.getByTestId('voice-panel').waitFor({ state: 'hidden' });
  await page.reload();
  await page.waitForFunction(() => window.confab && window.confab.gateway.status === 'ready', null, { timeout: 20_000 });
  await page.getByTestId('message-list').waitFor();
  await page.waitForTimeout(500);
  assert.ok(await offer.isHidden(), 'no offer after leaving on purpose');
});

test('during a screen share one\'s own camera stays in view', async () => {
  const page = A.page;
  await page.locator(`[data-testid="channel-link"][data-channel-id="${ids.voice}"]`).click();
  await page.locator('[data-testid="voice-state"][data-state="connected"]').waitFor({ timeout: 20_000 });
  await page.getByTestId('voice-camera').click();
  await page.getByTestId('voice-screen').click();
  const cam = page.locator('[data-testid="video-tile"][data-local="true"][data-track="camera"]');
  const screen = page.locator('[data-testid="video-tile"][data-local="true"][data-track="screen"]');
  await cam.waitFor({ timeout: 15_000 });
  await screen.waitFor({ timeout: 15_000 });
  const grid = await page.getByTestId('video-grid').boundingBox();
  const c = await cam.boundingBox();
  const vh = page.viewportSize().height;
  assert.ok(c.y >= grid.y && c.y + c.height <= grid.y + grid.height + 1 && c.y + c.height <= vh, `own camera below the fold: cam ${JSON.stringify(c)}, grid ${JSON.stringify(grid)}`);
  const m = await composer(page).boundingBox();
  assert.ok(m && m.y + m.height <= vh, 'the composer stays on screen');
  await snap(page, 'screen-share-with-camera');
  await expectAxeClean(page, 'axe: voice with video');
  await page.getByTestId('voice-leave').click();
  assertNoConsoleErrors(A, 'A (voice)');
});
