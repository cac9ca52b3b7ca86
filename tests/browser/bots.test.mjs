// Bots and webhooks in real Chromium (docs/bots.md), against the example bot in examples/bot
// running as its own process: A types `/` in the composer, picks the bot's /roll from the list,
// fills its option and sends; both A and B see the bot's answer, tagged BOT. A deferred command
// (/echo) answers after "thinking". With the bot stopped, a command fails with a clear error
// in A's composer. A webhook's post shows on B's screen under its name, tagged WEBHOOK.
// The settings' Integrations page makes a webhook and a bot and shows each secret once; both
// secrets work, a reset token replaces the old one, and a removed bot leaves B's member list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  tokenOf, rest, uniqueName, waitFor, repoRoot, openServerSettings,
} from './lib.mjs';

let server;
let botProcess = null;
let botOutput = '';
const people = [];

function botBinary() {
  if (process.env.CONFAB_EXAMPLE_BOT) return process.env.CONFAB_EXAMPLE_BOT;
  const dir = process.env.CONFAB_BIN ? path.dirname(process.env.CONFAB_BIN) : path.join(repoRoot, 'target/debug');
  const bin = path.join(dir, 'confab-example-bot');
  if (!fs.existsSync(bin)) throw new Error(`example bot not found at ${bin}: cargo build -p confab-example-bot`);
  return bin;
}

/** Starts the example bot with `token`; resolves once it registered its commands. */
async function startBot(token) {
  botOutput = '';
  botProcess = spawn(botBinary(), ['--url', server.url, '--token', token], { stdio: ['ignore', 'pipe', 'pipe'] });
  botProcess.stdout.on('data', (d) => { botOutput += d; });
  botProcess.stderr.on('data', (d) => { botOutput += d; });
  await waitFor(() => botOutput.includes('ready: commands registered'), { timeout: 20_000, message: `the example bot to register its commands (output: ${botOutput})` });
}

async function stopBot() {
  // A process ended by a signal has a null exitCode and a signalCode.
  if (!botProcess || botProcess.exitCode !== null || botProcess.signalCode !== null) return;
  const exited = new Promise((r) => botProcess.once('exit', r));
  botProcess.kill('SIGTERM');
  await exited;
}

before(async () => {
  server = await startServer();
  for (const name of ['bota', 'botb']) people.push({ name: uniqueName(name), b: await launchBrowser() });
});

after(async () => {
  await stopBot();
  for (const p of people) await p.b.close();
  await server?.stop();
});

/** The last message in the page's list whose text includes `text`. */
function messageWith(page, text) {
  return page.getByTestId('message').filter({ hasText: text }).last();
}

test('a slash command from the composer reaches the example bot, its answer shows for everyone; a webhook post is tagged', async () => {
  const [A, B] = people;
  const pa = A.b.page;
  const pb = B.b.page;
  await registerViaUi(pa, server.url, A.name);
  await createServerViaUi(pa, 'Bot Lab');
  const invite = await createInviteViaUi(pa);
  await registerViaUi(pb, server.url, B.name);
  await joinViaUi(pb, invite, 'Bot Lab');

  const token = await tokenOf(pa);
  const servers = await rest(server.url, token, 'GET', '/servers');
  const sid = servers.find((s) => s.name === 'Bot Lab').id;
  const bot = await rest(server.url, token, 'POST', `/servers/${sid}/bots`, { username: 'dicebot', permissions: '3072' });
  await startBot(bot.token);
  // The bot is a member, tagged in B's member list.
  const botRow = pb.locator(`[data-testid="member"][data-user-id="${bot.user.id}"]`);
  await botRow.waitFor({ timeout: 10_000 });
  assert.equal(await botRow.getByTestId('bot-tag').textContent(), 'BOT');

  // A types "/": the bot's commands are offered; picking /roll leaves its option to fill.
  const composer = pa.getByTestId('composer');
  await composer.click();
  await composer.pressSequentially('/r');
  const list = pa.getByTestId('command-autocomplete');
  const roll = list.locator('[data-testid="command-option"][data-kind="command"]').filter({ hasText: '/roll' });
  await roll.waitFor({ timeout: 10_000 });
  assert.match(await roll.textContent(), /Roll a die/);
  await roll.click();
  assert.equal(await composer.inputValue(), '/roll sides:');
  await composer.pressSequentially('20');
  await composer.press('Enter');
  assert.equal(await composer.inputValue(), '', 'a command is sent, not kept');

  // The answer is the bot's message, in both windows, with the BOT tag.
  for (const page of [pa, pb]) {
    const m = messageWith(page, 'rolled');
    await m.waitFor({ timeout: 10_000 });
    assert.match(await m.textContent(), new RegExp(`${A.name} rolled \\d+ \\(1-20\\)`));
    assert.equal(await m.getByTestId('bot-tag').textContent(), 'BOT');
    assert.equal(await m.getByTestId('message-author').textContent(), 'dicebot');
  }
  // The command itself never became a message.
  assert.equal(await pb.getByTestId('message').filter({ hasText: '/roll' }).count(), 0);

  // A deferred command: "thinking" first, then the follow-up.
  await composer.pressSequentially('/echo text:hello from the lab');
  await composer.press('Enter');
  await pa.getByTestId('interaction-status').filter({ hasText: 'thinking' }).waitFor({ timeout: 5_000 });
  await messageWith(pb, 'said: hello from the lab').waitFor({ timeout: 10_000 });
  await waitFor(async () => !(await pa.getByTestId('interaction-status').isVisible()), { message: 'the thinking line to go' });
  // Options are checked before anything is sent.
  await composer.pressSequentially('/roll sides:many');
  await composer.press('Enter');
  await pa.getByTestId('composer-error').filter({ hasText: 'whole number' }).waitFor();
  await composer.fill('');

  // The bot stops: the next command fails with a clear error, in A's composer.
  await stopBot();
  await composer.pressSequentially('/roll');
  await composer.press('Escape');
  await composer.press('Enter');
  const error = pa.getByTestId('composer-error');
  await error.filter({ hasText: 'did not respond' }).waitFor({ timeout: 8_000 });
  assert.match(await error.textContent(), /\/roll: The bot did not respond in time/);

  // A webhook posts into #general: B sees it under the name of the post, tagged WEBHOOK.
  const general = (await rest(server.url, token, 'GET', `/servers/${sid}/channels`)).find((c) => c.name === 'general');
  const hook = await rest(server.url, token, 'POST', `/channels/${general.id}/webhooks`, { name: 'Deploys' });
  const res = await fetch(`${server.url}/api/v1/webhooks/${hook.id}/${hook.token}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ content: 'release 1.2 shipped', username: 'CI' }),
  });
  assert.equal(res.status, 200);
  const posted = messageWith(pb, 'release 1.2 shipped');
  await posted.waitFor({ timeout: 10_000 });
  assert.equal(await posted.getByTestId('message-author').textContent(), 'CI');
  assert.equal(await posted.getByTestId('bot-tag').textContent(), 'WEBHOOK');

  for (const p of people) assert.deepEqual(p.b.consoleErrors, [], `${p.name}: no console errors`);
});

/** `GET /users/@me` with `Authorization: Bot <token>`: the status and the body. */
async function botMe(token) {
  const res = await fetch(`${server.url}/api/v1/users/@me`, { headers: { Authorization: `Bot ${token}` } });
  return [res.status, res.ok ? await res.json() : null];
}

test('the Integrations page makes a webhook and a bot, shows each secret once, resets and removes', async () => {
  const [A, B] = people;
  const pa = A.b.page;
  const pb = B.b.page;
  await createServerViaUi(pa, 'Integrations Lab');
  const invite = await createInviteViaUi(pa);
  await joinViaUi(pb, invite, 'Integrations Lab');

  const settings = await openServerSettings(pa, 'Integrations');
  // A webhook for #general: its URL is shown once and posts under its name on B's screen.
  await settings.getByTestId('webhook-name').fill('Alerts');
  await settings.getByTestId('webhook-create').click();
  const url = await settings.getByTestId('webhook-url').inputValue();
  assert.match(url, /\/api\/v1\/webhooks\/\d+\/\S+$/);
  await settings.getByTestId('webhook-item').filter({ hasText: 'Alerts' }).waitFor();
  const res = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content: 'disk 91% full' }),
  });
  assert.equal(res.status, 200);
  const posted = messageWith(pb, 'disk 91% full');
  await posted.waitFor({ timeout: 10_000 });
  assert.equal(await posted.getByTestId('message-author').textContent(), 'Alerts');

  // A bot with the default permissions: its token works and it joins B's member list.
  await settings.getByTestId('bot-username').fill('helperbot');
  assert.equal(await settings.getByTestId('bot-perm-SEND_MESSAGES').isChecked(), true);
  await settings.getByTestId('bot-create').click();
  const first = await settings.getByTestId('bot-token').inputValue();
  const [status, me] = await botMe(first);
  assert.equal(status, 200);
  assert.equal(me.username, 'helperbot');
  assert.equal(me.bot, true);
  const botRow = pb.locator(`[data-testid="member"][data-user-id="${me.id}"]`);
  await botRow.waitFor({ timeout: 10_000 });
  const item = settings.locator(`[data-testid="bot-item"][data-bot-id="${me.id}"]`);
  await item.waitFor();

  // A new token replaces the old one at once.
  await item.getByTestId('bot-reset').click();
  await waitFor(async () => (await settings.getByTestId('bot-token').inputValue()) !== first, { message: 'a new token' });
  const second = await settings.getByTestId('bot-token').inputValue();
  assert.equal((await botMe(first))[0], 401);
  assert.equal((await botMe(second))[0], 200);

  // Removing the bot takes it off the page and out of B's member list.
  await item.getByTestId('bot-remove').click();
  await waitFor(async () => (await item.count()) === 0, { message: 'the bot to leave the list' });
  await waitFor(async () => (await botRow.count()) === 0, { message: "the bot to leave B's member list" });

  for (const p of people) assert.deepEqual(p.b.consoleErrors, [], `${p.name}: no console errors`);
});
