// Stage channels in the web client: the speakers / audience split of a stage's participant list
// with raised hands, the moderators' "Invite to speak" / "Move to audience" on a participant, and
// the voice panel's own controls ("Raise hand" / "Lower hand", "Become a speaker", "Step down").
// The server decides who may do what (MUTE_MEMBERS in the channel); the buttons only follow the
// member's server permissions, and a refusal is shown as a toast.
import { h } from './dom.js';
import { icon } from './icons.js';
import { PERM } from './state.js';

let ctx = null;  // {api, store, toast}

export function initStage(c) { ctx = c; }

/** Channels people join with voice. */
export function isVoiceChannel(c) { return !!c && (c.type === 'voice' || c.type === 'stage'); }

/** Raised hands first (oldest first), then the rest. */
function byHand(a, b) {
  const ha = a.request_to_speak_timestamp || '';
  const hb = b.request_to_speak_timestamp || '';
  if (ha && hb) return ha < hb ? -1 : ha > hb ? 1 : 0;
  return ha ? -1 : hb ? 1 : 0;
}

async function run(what, fn) {
  try { await fn(); } catch (e) { ctx.toast(`${what}: ${e.message}`, 'error'); }
}

/** The participant list of a stage channel: `row(v)` builds one participant's row. */
export function stageParticipants(c, states, row) {
  const meId = ctx.store.me && ctx.store.me.id;
  const moderator = ctx.store.can(PERM.MUTE_MEMBERS, c.server_id);
  const speakers = states.filter((v) => !v.suppress);
  const audience = states.filter((v) => v.suppress).sort(byHand);
  const item = (v) => {
    const li = row(v);
    const hand = !!v.request_to_speak_timestamp;
    li.dataset.stageRole = v.suppress ? 'audience' : 'speaker';
    li.dataset.hand = String(hand);
    if (hand) li.append(h('span', { role: 'img', class: 'vu-icon hand', title: 'Asks to speak', 'aria-label': 'hand raised', 'data-testid': 'stage-hand-icon' }, icon('hand', 14)));
    if (moderator && v.user_id !== meId) {
      const invite = v.suppress;
      li.append(h('button', {
        class: 'icon-btn tiny stage-action',
        'data-testid': invite ? 'stage-invite' : 'stage-to-audience',
        'aria-label': invite ? 'Invite to speak' : 'Move to audience', title: invite ? 'Invite to speak' : 'Move to audience',
        onclick: (e) => {
          e.stopPropagation();
          run(invite ? 'Invite to speak' : 'Move to audience', () => ctx.api.updateVoiceState(c.server_id, v.user_id, c.id, !invite));
        },
      }, icon(invite ? 'mic' : 'micOff', 14)));
    }
    return li;
  };
  return [
    h('li', { class: 'stage-head', 'data-testid': 'stage-speakers-head', text: `Speakers — ${speakers.length}` }),
    ...speakers.map(item),
    h('li', { class: 'stage-head', 'data-testid': 'stage-audience-head', text: `Audience — ${audience.length}` }),
    ...audience.map(item),
  ];
}

/** The voice panel's stage controls for our own state in stage channel `c` (or nothing). */
export function stagePanelButtons(c, mine) {
  if (!c || c.type !== 'stage' || !mine) return null;
  const moderator = ctx.store.can(PERM.MUTE_MEMBERS, c.server_id);
  const set = (what, patch) => run(what, () => ctx.api.updateMyVoiceState(c.server_id, c.id, patch));
  if (!mine.suppress) {
    return h('div', { class: 'stage-buttons', 'data-testid': 'stage-controls' },
      h('span', { class: 'muted small', text: 'You are a speaker' }),
      h('button', { class: 'btn secondary small', 'data-testid': 'stage-step-down', onclick: () => set('Step down', { suppress: true }) }, 'Step down'));
  }
  const raised = !!mine.request_to_speak_timestamp;
  return h('div', { class: 'stage-buttons', 'data-testid': 'stage-controls' },
    h('span', { class: 'muted small', text: 'You are in the audience' }),
    h('button', {
      class: `btn secondary small${raised ? ' on' : ''}`, 'data-testid': 'stage-hand', 'aria-pressed': String(raised),
      onclick: () => set(raised ? 'Lower hand' : 'Raise hand', { request_to_speak: !raised }),
    }, icon('hand', 14), raised ? 'Lower hand' : 'Raise hand'),
    moderator ? h('button', { class: 'btn secondary small', 'data-testid': 'stage-speak', onclick: () => set('Become a speaker', { suppress: false }) }, 'Become a speaker') : null);
}
