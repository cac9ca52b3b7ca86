// Safety (docs/safety.md): the server settings' AutoMod, Safety and Reports pages, the
// "Report" dialog for messages, and raid-mode notices for moderators.
//
// Everything user-provided (rule names, words, reasons, message excerpts) goes through
// textContent; nothing is parsed as HTML.

import { h, add, clear, openDialog, field, toast } from './dom.js';
import { PERM } from './state.js';
import { addSettingsTab, ensureRoles } from './community.js';

let api = null;
let store = null;
// Open pages refresh themselves when a safety event arrives.
const pageListeners = new Set();

export function initSafety(ctx) {
  ({ api, store } = ctx);
  const g = ctx.gateway;
  g.on('RAID_MODE_UPDATE', (d) => {
    const s = d && store.servers.get(d.server_id);
    if (s && d.raid_mode) toast(`Raid mode is on in ${s.name}${d.joins ? ` (${d.joins} recent joins)` : ''}: newcomers must verify and wait before posting.`, 'error', 10000);
    else if (s) toast(`Raid mode is off in ${s.name}.`, 'info');
    notify('safety');
  });
  g.on('REPORT_CREATE', () => notify('reports'));
  g.on('REPORT_UPDATE', () => notify('reports'));
  addSettingsTab('automod', 'AutoMod', automodTab);
  addSettingsTab('safety', 'Safety', safetyTab);
  addSettingsTab('reports', 'Reports', reportsTab);
}

function notify(topic) { for (const fn of [...pageListeners]) fn(topic); }

/** Keeps `fn` subscribed while `panel` is in the document. */
function whileShown(panel, fn) {
  const wrapped = (topic) => { if (!panel.isConnected) { pageListeners.delete(wrapped); return; } fn(topic); };
  pageListeners.add(wrapped);
}

function errorLine() { return h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'tab-error' }); }
function showError(el, e) { el.textContent = e ? (e.message || String(e)) : ''; el.hidden = !e; }
function noPermission(panel, what) { panel.append(h('p', { class: 'muted', text: `You need the ${what} permission for this page.` })); }

const textChannels = (s) => [...s.channels.values()].filter((c) => c.type === 'text').sort((a, b) => (a.position - b.position) || (a.id < b.id ? -1 : 1));
const lines = (v) => v.split('\n').map((x) => x.trim()).filter(Boolean);

// ------------------------------------------------------------------ AutoMod

const KINDS = [
  ['keyword', 'Blocked words'], ['regex', 'Patterns (regular expressions)'], ['mention_spam', 'Mention spam'],
  ['links', 'Links'], ['invites', 'Invite links'],
];
const KIND_LABEL = Object.fromEntries(KINDS);

function ruleSummary(s, r) {
  const what = r.kind === 'keyword' ? r.keywords.join(', ')
    : r.kind === 'regex' ? r.patterns.join('  ')
    : r.kind === 'mention_spam' ? `more than ${r.mention_limit} mentions`
    : r.allowed_domains.length ? `allowed: ${r.allowed_domains.join(', ')}` : 'none allowed';
  const acts = [];
  if (r.block) acts.push('block');
  if (r.alert_channel_id) acts.push(`alert #${s.channels.get(r.alert_channel_id)?.name || 'channel'}`);
  if (r.timeout_seconds) acts.push(`timeout ${r.timeout_seconds} s`);
  return `${KIND_LABEL[r.kind] || r.kind}: ${what} → ${acts.join(', ')}`;
}

function automodTab(s, view, panel) {
  if (!store.can(PERM.MANAGE_SERVER, s.id)) { noPermission(panel, 'Manage Server'); return null; }
  ensureRoles(s.id);
  const err = errorLine();
  const list = h('ul', { class: 'admin-list', 'aria-label': 'AutoMod rules', 'data-testid': 'automod-rules' });
  let editing = null;  // the rule being edited, or null for a new one

  const name = field({ label: 'Rule name', name: 'name', maxlength: 100, testid: 'automod-name' });
  const kind = h('select', { 'aria-label': 'Rule type', 'data-testid': 'automod-kind' }, KINDS.map(([v, t]) => h('option', { value: v, text: t })));
  const words = field({ label: 'Words, one per line (* at either end matches more letters)', name: 'keywords', type: 'textarea', testid: 'automod-words' });
  const limit = field({ label: 'Most mentions allowed', name: 'mention_limit', type: 'number', value: '5', testid: 'automod-mention-limit' });
  const block = h('input', { type: 'checkbox', checked: true, 'data-testid': 'automod-block', id: 'automod-block' });
  const blockMessage = field({ label: 'Message shown to the sender', name: 'block_message', maxlength: 150, testid: 'automod-block-message' });
  const alert = h('select', { 'aria-label': 'Alert channel', 'data-testid': 'automod-alert' });
  const timeout = field({ label: 'Timeout the author (seconds, empty for none)', name: 'timeout_seconds', type: 'number', testid: 'automod-timeout' });
  const exemptRoles = h('select', { multiple: true, 'aria-label': 'Exempt roles', 'data-testid': 'automod-exempt-roles', size: 3 });
  const exemptChannels = h('select', { multiple: true, 'aria-label': 'Exempt channels', 'data-testid': 'automod-exempt-channels', size: 3 });
  const save = h('button', { type: 'button', class: 'btn primary small', text: 'Create rule', 'data-testid': 'automod-save' });
  const cancel = h('button', { type: 'button', class: 'btn secondary small', text: 'New rule', 'data-testid': 'automod-new' });
  const form = h('div', { class: 'automod-form', 'data-testid': 'automod-form' });

  const fillSelects = () => {
    add(clear(alert), h('option', { value: '', text: 'No alert' }), textChannels(s).map((c) => h('option', { value: c.id, text: `#${c.name}` })));
    add(clear(exemptChannels), textChannels(s).map((c) => h('option', { value: c.id, text: `#${c.name}` })));
    add(clear(exemptRoles), store.sortedRoles(s.id).filter((r) => r.id !== s.id).reverse().map((r) => h('option', { value: r.id, text: r.name })));
  };
  const showKind = () => {
    const k = kind.value;
    words.el.hidden = k === 'mention_spam';
    words.el.querySelector('label').textContent = k === 'keyword' ? 'Words, one per line (* at either end matches more letters)'
      : k === 'regex' ? 'Patterns, one per line (case-insensitive)' : 'Allowed domains, one per line';
    limit.el.hidden = k !== 'mention_spam';
  };
  const load = (r) => {
    editing = r;
    fillSelects();
    name.input.value = r ? r.name : '';
    kind.value = r ? r.kind : 'keyword';
    kind.disabled = !!r;
    words.input.value = r ? (r.kind === 'keyword' ? r.keywords : r.kind === 'regex' ? r.patterns : r.allowed_domains).join('\n') : '';
    limit.input.value = r && r.mention_limit ? String(r.mention_limit) : '5';
    block.checked = r ? r.block : true;
    blockMessage.input.value = (r && r.block_message) || '';
    alert.value = (r && r.alert_channel_id) || '';
    timeout.input.value = r && r.timeout_seconds ? String(r.timeout_seconds) : '';
    for (const o of exemptRoles.options) o.selected = !!r && r.exempt_roles.includes(o.value);
    for (const o of exemptChannels.options) o.selected = !!r && r.exempt_channels.includes(o.value);
    save.textContent = r ? 'Save rule' : 'Create rule';
    showKind();
  };
  const body = () => {
    const k = kind.value;
    const b = {
      name: name.input.value.trim(), block: block.checked,
      block_message: blockMessage.input.value.trim() || null,
      alert_channel_id: alert.value || null,
      timeout_seconds: timeout.input.value ? Number(timeout.input.value) : null,
      exempt_roles: [...exemptRoles.selectedOptions].map((o) => o.value),
      exempt_channels: [...exemptChannels.selectedOptions].map((o) => o.value),
    };
    if (!editing) b.kind = k;
    if (k === 'keyword') b.keywords = lines(words.input.value);
    else if (k === 'regex') b.patterns = lines(words.input.value);
    else if (k === 'mention_spam') b.mention_limit = Number(limit.input.value);
    else b.allowed_domains = lines(words.input.value);
    return b;
  };
  const render = (rules) => {
    clear(list);
    if (!rules.length) list.append(h('li', { class: 'muted', text: 'No rules yet.' }));
    for (const r of rules) {
      list.append(h('li', { class: 'admin-row', 'data-testid': 'automod-rule', 'data-rule-id': r.id },
        h('div', {}, h('strong', { text: r.name }), r.enabled ? null : h('span', { class: 'muted', text: ' (off)' }),
          h('div', { class: 'muted small', text: ruleSummary(s, r) })),
        h('div', { class: 'row' },
          h('button', { type: 'button', class: 'btn secondary small', text: 'Edit', 'aria-label': `Edit ${r.name}`, 'data-testid': 'automod-edit', onclick: () => load(r) }),
          h('button', { type: 'button', class: 'btn secondary small', text: r.enabled ? 'Turn off' : 'Turn on', 'data-testid': 'automod-toggle',
            onclick: () => run(() => api.updateAutomodRule(s.id, r.id, { enabled: !r.enabled })) }),
          h('button', { type: 'button', class: 'btn danger small', text: 'Delete', 'aria-label': `Delete ${r.name}`, 'data-testid': 'automod-delete',
            onclick: () => run(() => api.deleteAutomodRule(s.id, r.id)) }))));
    }
  };
  const refresh = async () => {
    try { render(await api.automodRules(s.id)); } catch (e) { showError(err, e); }
  };
  const run = async (fn) => {
    showError(err, null);
    try { await fn(); await refresh(); return true; } catch (e) { showError(err, e); return false; }
  };
  save.addEventListener('click', async () => {
    save.disabled = true;
    const ok = await run(() => (editing ? api.updateAutomodRule(s.id, editing.id, body()) : api.createAutomodRule(s.id, body())));
    save.disabled = false;
    if (ok) load(null);
  });
  cancel.addEventListener('click', () => load(null));
  kind.addEventListener('change', showKind);
  form.append(name.el, h('label', { class: 'field' }, 'Type ', kind), words.el, limit.el,
    h('label', { class: 'check' }, block, ' Block the message'), blockMessage.el,
    h('label', { class: 'field' }, 'Alert channel ', alert), timeout.el,
    h('label', { class: 'field' }, 'Exempt roles ', exemptRoles), h('label', { class: 'field' }, 'Exempt channels ', exemptChannels),
    h('div', { class: 'row' }, save, cancel));
  load(null);
  refresh();
  panel.append(err, h('p', { class: 'muted small', text: 'Rules are checked before a message is stored. Owners, administrators and members with Manage Server are never checked.' }), list, h('h3', { text: 'Rule' }), form);
  return null;
}

// ------------------------------------------------------------------ Safety (raid mode, verification)

const LEVELS = [
  ['0', 'None'], ['2', 'Medium — accounts older than 5 minutes'], ['3', 'High — also members for 10 minutes'],
  ['4', 'Highest — also every newcomer confirms "I am human"'],
];

function safetyTab(s, view, panel) {
  const manage = store.can(PERM.MANAGE_SERVER, s.id);
  if (!manage && !store.can(PERM.MODERATE_MEMBERS, s.id)) { noPermission(panel, 'Manage Server or Moderate Members'); return null; }
  const err = errorLine();
  const status = h('p', { class: 'raid-status', 'data-testid': 'raid-status', 'aria-live': 'polite' });
  const toggle = h('button', { type: 'button', class: 'btn small', 'data-testid': 'raid-toggle' });
  const level = h('select', { 'aria-label': 'Verification level', 'data-testid': 'verification-level', disabled: !manage }, LEVELS.map(([v, t]) => h('option', { value: v, text: t })));
  const threshold = field({ label: 'Raid mode turns on after this many joins (0 = never)', name: 'raid_join_threshold', type: 'number', testid: 'raid-threshold' });
  const windowSecs = field({ label: '…within this many seconds', name: 'raid_join_window_secs', type: 'number', testid: 'raid-window' });
  const restrict = field({ label: 'In raid mode, newcomers wait this many minutes before posting', name: 'raid_restrict_minutes', type: 'number', testid: 'raid-restrict' });
  const minAge = field({ label: 'In raid mode, refuse accounts younger than (seconds, 0 = any)', name: 'raid_min_account_age_secs', type: 'number', testid: 'raid-min-age' });
  const alert = h('select', { 'aria-label': 'Raid alert channel', 'data-testid': 'raid-alert-channel', disabled: !manage });
  const save = h('button', { type: 'button', class: 'btn primary small', text: 'Save', 'data-testid': 'safety-save', disabled: !manage });
  let current = null;
  for (const f of [threshold, windowSecs, restrict, minAge]) f.input.disabled = !manage;
  const show = (st) => {
    current = st;
    status.textContent = st.raid_mode ? `Raid mode is ON${st.raid_mode_since ? ` since ${new Date(st.raid_mode_since).toLocaleTimeString()}` : ''}.` : 'Raid mode is off.';
    status.classList.toggle('on', st.raid_mode);
    toggle.textContent = st.raid_mode ? 'Turn raid mode off' : 'Turn raid mode on';
    toggle.className = `btn small ${st.raid_mode ? 'secondary' : 'danger'}`;
    level.value = String(st.verification_level);
    threshold.input.value = String(st.raid_join_threshold);
    windowSecs.input.value = String(st.raid_join_window_secs);
    restrict.input.value = String(st.raid_restrict_minutes);
    minAge.input.value = String(st.raid_min_account_age_secs);
    add(clear(alert), h('option', { value: '', text: 'No alert channel' }), textChannels(s).map((c) => h('option', { value: c.id, text: `#${c.name}` })));
    alert.value = st.alert_channel_id || '';
  };
  const refresh = async () => { try { show(await api.safetySettings(s.id)); } catch (e) { showError(err, e); } };
  const patch = async (body) => {
    showError(err, null);
    try { show(await api.updateSafety(s.id, body)); } catch (e) { showError(err, e); }
  };
  toggle.addEventListener('click', () => patch({ raid_mode: !(current && current.raid_mode) }));
  save.addEventListener('click', () => patch({
    verification_level: Number(level.value), raid_join_threshold: Number(threshold.input.value),
    raid_join_window_secs: Number(windowSecs.input.value), raid_restrict_minutes: Number(restrict.input.value),
    raid_min_account_age_secs: Number(minAge.input.value), alert_channel_id: alert.value || null,
  }));
  whileShown(panel, (topic) => { if (topic === 'safety') refresh(); });
  refresh();
  panel.append(err, h('h3', { text: 'Raid protection' }), status, toggle, threshold.el, windowSecs.el, restrict.el, minAge.el,
    h('label', { class: 'field' }, 'Alert channel ', alert),
    h('h3', { text: 'Verification level' }), level,
    h('p', { class: 'muted small', text: 'Low (a verified email) is not offered: Confab does not verify email addresses. Members with any role are not held back.' }),
    h('div', { class: 'row' }, save));
  return null;
}

// ------------------------------------------------------------------ Reports

function reportsTab(s, view, panel) {
  if (!store.can(PERM.MODERATE_MEMBERS, s.id) && !store.can(PERM.MANAGE_MESSAGES, s.id)) { noPermission(panel, 'Moderate Members or Manage Messages'); return null; }
  const err = errorLine();
  const filter = h('select', { 'aria-label': 'Show reports', 'data-testid': 'reports-filter' },
    [['open', 'Open'], ['resolved', 'Resolved'], ['dismissed', 'Dismissed'], ['all', 'All']].map(([v, t]) => h('option', { value: v, text: t })));
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Reports', 'data-testid': 'reports-list' });
  const who = (id) => store.displayName(id, store.userById(id), s.id) || `user ${id}`;
  const act = async (r, action) => {
    showError(err, null);
    try {
      await api.resolveReport(s.id, r.id, action === 'timeout' ? { action, timeout_seconds: 3600 } : { action });
      await refresh();
    } catch (e) { showError(err, e); }
  };
  const render = (reports) => {
    clear(list);
    if (!reports.length) list.append(h('li', { class: 'muted', text: 'No reports.' }));
    for (const r of reports) {
      const open = r.status === 'open';
      list.append(h('li', { class: 'report', 'data-testid': 'report-item', 'data-report-id': r.id },
        h('div', {}, h('strong', { text: who(r.reporter_id) }), ' reported ', h('strong', { text: who(r.target_user_id) }),
          r.channel_id ? ` in #${s.channels.get(r.channel_id)?.name || 'channel'}` : ''),
        r.message_content != null ? h('blockquote', { class: 'report-content', 'data-testid': 'report-content', text: r.message_content }) : null,
        h('div', { class: 'muted small' }, 'Reason: ', h('span', { 'data-testid': 'report-reason', text: r.reason }),
          open ? '' : ` · ${r.status} (${r.resolution})`),
        open ? h('div', { class: 'row' },
          r.message_id ? h('button', { type: 'button', class: 'btn danger small', text: 'Delete message', 'data-testid': 'report-delete', onclick: () => act(r, 'delete_message') }) : null,
          h('button', { type: 'button', class: 'btn secondary small', text: 'Timeout 1 h', 'data-testid': 'report-timeout', onclick: () => act(r, 'timeout') }),
          h('button', { type: 'button', class: 'btn danger small', text: 'Ban', 'data-testid': 'report-ban', onclick: () => act(r, 'ban') }),
          h('button', { type: 'button', class: 'btn secondary small', text: 'Dismiss', 'data-testid': 'report-dismiss', onclick: () => act(r, 'dismiss') })) : null));
    }
  };
  const refresh = async () => {
    try { render(await api.reports(s.id, filter.value)); } catch (e) { showError(err, e); }
  };
  filter.addEventListener('change', refresh);
  whileShown(panel, (topic) => { if (topic === 'reports') refresh(); });
  refresh();
  panel.append(err, h('div', { class: 'row' }, filter,
    h('button', { type: 'button', class: 'btn secondary small', text: 'Refresh', 'aria-label': 'Refresh reports', onclick: refresh })), list);
  return null;
}

// ------------------------------------------------------------------ reporting a message

/** The "Report" dialog for a message of a server channel. */
export function reportMessageDialog(m) {
  const reason = field({ label: 'What is wrong with this message?', name: 'reason', type: 'textarea', maxlength: 512, testid: 'report-reason-input' });
  return openDialog({
    title: 'Report message', testid: 'report-dialog',
    content: [h('blockquote', { class: 'report-content', text: (m.content || '').slice(0, 300) }), reason.el,
      h('p', { class: 'muted small', text: 'Only the server\'s moderators see reports.' })],
    actions: [{ label: 'Cancel', value: false }, {
      label: 'Report', kind: 'danger', submit: true,
      onClick: async () => {
        await api.createReport(m.server_id, { message_id: m.id, channel_id: m.channel_id, reason: reason.input.value.trim() });
        toast('Thanks — the moderators will look at it.', 'info');
        return true;
      },
    }],
  });
}

/** "I am human": the click-through newcomers make in raid mode (or under the highest level). */
export async function verifyHuman(serverId) {
  await api.verifyMember(serverId);
  toast('Thanks! You can post once any waiting time has passed.', 'info');
}
