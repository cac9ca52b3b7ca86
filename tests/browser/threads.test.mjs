// Threads and forums through the real UI in two browsers (docs/threads.md): A starts a thread
// from a message; B finds it in the channel's thread list and replies in the side pane; A sees
// the reply in the thread pane. A forum post made by A (title, message, tag) appears in B's
// forum view with its tag and reply count, and moves up when B replies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, registerViaUi, createServerViaUi, createInviteViaUi, joinViaUi,
  uniqueName, tokenOf, rest } from './lib.mjs';

let server;
let A;
let B;
const userA = uniqueName('thra');
const userB = uniqueName('thrb');
const serverName = uniqueName('Threads ');

const msgs = (page) => page.getByTestId('message-list').getByTestId('message');
const msgByText = (page, text) => msgs(page).filter({ has: page.getByTestId('message-content').filter({ hasText: text }) });
const paneMessage = (page, text) => page.getByTestId('thread-pane').getByTestId('thread-message-content').filter({ hasText: text });

async function send(page, text) {
  const box = page.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
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

test('setup: A creates a server, B joins by invite', async () => {
  await registerViaUi(A.page, server.url, userA);
  await registerViaUi(B.page, server.url, userB);
  await createServerViaUi(A.page, serverName);
  const link = await createInviteViaUi(A.page);
  await joinViaUi(B.page, link, serverName);
  await A.page.getByTestId('member-list').getByText(userB).waitFor({ timeout: 10_000 });
});

test('A starts a thread from a message; B replies in it; A sees the reply', async () => {
  await send(A.page, 'who is up for the launch party?');
  const root = msgByText(A.page, 'who is up for the launch party?');
  await root.waitFor();
  await root.hover();
  await root.getByTestId('create-thread').click();
  const dlg = A.page.getByTestId('create-thread-dialog');
  await dlg.getByTestId('thread-name').fill('Launch party');
  await dlg.getByRole('button', { name: 'Create' }).click();
  await dlg.waitFor({ state: 'detached' });
  const paneA = A.page.getByTestId('thread-pane');
  await paneA.waitFor({ state: 'visible' });
  assert.equal(await paneA.getByTestId('thread-title').textContent(), 'Launch party');

  // B opens the channel's thread list and the thread.
  await msgByText(B.page, 'who is up for the launch party?').waitFor();
  await B.page.getByTestId('threads-button').click();
  const item = B.page.getByTestId('threads-dialog').getByTestId('thread-item').filter({ hasText: 'Launch party' });
  await item.waitFor();
  await item.click();
  const paneB = B.page.getByTestId('thread-pane');
  await paneB.waitFor({ state: 'visible' });
  await paneB.getByTestId('thread-composer').fill('count me in!');
  await paneB.getByTestId('thread-composer').press('Enter');
  await paneMessage(B.page, 'count me in!').waitFor();

  // A sees it live in the pane, and it is not in the channel's own message list.
  await paneMessage(A.page, 'count me in!').waitFor({ timeout: 10_000 });
  assert.equal(await msgByText(A.page, 'count me in!').count(), 0);
  // Stored in the thread, counted on it.
  const token = await tokenOf(A.page);
  const channelId = await A.page.evaluate(() => window.confab.store.currentChannelId);
  const threads = await rest(server.url, token, 'GET', `/channels/${channelId}/threads`);
  assert.equal(threads.length, 1);
  assert.equal(threads[0].name, 'Launch party');
  assert.equal(threads[0].thread_metadata.message_count, 1);
  assert.equal(threads[0].thread_metadata.member_count, 2);
  await A.page.getByTestId('close-thread').click();
  await B.page.getByTestId('close-thread').click();
});

test('a forum post made by A appears for B with its tag, and a reply moves it up', async () => {
  const token = await tokenOf(A.page);
  const serverId = await A.page.evaluate(() => window.confab.store.server.id);
  const forum = await rest(server.url, token, 'POST', `/servers/${serverId}/channels`, { name: 'help', type: 'forum' });
  await rest(server.url, token, 'PATCH', `/channels/${forum.id}`, { available_tags: [{ name: 'question' }, { name: 'bug' }] });
  await rest(server.url, token, 'POST', `/channels/${forum.id}/threads`, { name: 'Older post', message: { content: 'first' } });
  // Both open the forum.
  for (const page of [A.page, B.page]) {
    const link = page.locator(`[data-testid="channel-link"][data-channel-id="${forum.id}"]`);
    await link.waitFor({ timeout: 10_000 });
    await link.click();
    await page.getByTestId('forum-view').waitFor({ state: 'visible' });
  }
  // A posts through the dialog: title, message, a tag.
  await A.page.getByTestId('new-post').click();
  const dlg = A.page.getByTestId('new-post-dialog');
  await dlg.getByTestId('post-title-input').fill('How do I invite friends?');
  await dlg.getByTestId('post-body-input').fill('I cannot find the button');
  await dlg.getByTestId('post-tag-option').first().check();
  await dlg.getByRole('button', { name: 'Post' }).click();
  await dlg.waitFor({ state: 'detached' });

  const postsB = B.page.getByTestId('forum-post');
  const newPost = postsB.filter({ hasText: 'How do I invite friends?' });
  await newPost.waitFor({ timeout: 10_000 });
  assert.equal(await newPost.getByTestId('post-tag').textContent(), 'question');
  assert.equal(await newPost.getByTestId('post-replies').textContent(), '0 replies');
  assert.equal(await postsB.first().getByTestId('post-title').textContent(), 'How do I invite friends?');

  // B replies in the older post: it moves to the top with one reply, for A too.
  await postsB.filter({ hasText: 'Older post' }).click();
  const paneB = B.page.getByTestId('thread-pane');
  await paneB.getByTestId('thread-composer').fill('answer');
  await paneB.getByTestId('thread-composer').press('Enter');
  await paneMessage(B.page, 'answer').waitFor();
  const top = A.page.getByTestId('forum-post').first();
  await top.filter({ hasText: 'Older post' }).waitFor({ timeout: 10_000 });
  await top.getByTestId('post-replies').filter({ hasText: '1 reply' }).waitFor();
});
