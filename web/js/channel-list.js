// The channel list: channels by category, their unread marks and edit actions, who is in each voice channel.

import { store, ui, voice } from './context.js';
import { sortChannels, PERM } from './state.js';
import { h, clear, avatar } from './dom.js';
import { icon } from './icons.js';
import { isVoiceChannel, stageParticipants } from './stage.js';
import { channelBadge, renderDmSidebar } from './dms.js';
import { selectChannel } from './navigation.js';
import { joinVoice } from './voice-panel.js';
import { createChannelDialog, editChannelDialog, deleteChannelDialog } from './dialogs.js';

export function renderChannels() {
  if (!ui) return;
  const el = clear(ui.channelList);
  if (store.home) { renderDmSidebar(el); return; }
  const s = store.server;
  if (!s) {
    el.append(h('p', { class: 'muted pad', text: 'Create a server or join one with an invite to get started.' }));
    return;
  }
  const all = sortChannels([...s.channels.values()]);
  const cats = all.filter((c) => c.type === 'category');
  const catIds = new Set(cats.map((c) => c.id));
  const top = all.filter((c) => c.type !== 'category' && (!c.parent_id || !catIds.has(c.parent_id)));
  // Edit controls for those who may change channels or their permissions (the server decides).
  const owner = store.isOwner() || store.can(PERM.MANAGE_CHANNELS) || store.can(PERM.MANAGE_ROLES);
  const ul = h('ul', { class: 'channels' });
  for (const c of top) ul.append(channelRow(c, owner));
  el.append(ul);
  for (const cat of cats) {
    const children = all.filter((c) => c.parent_id === cat.id && c.type !== 'category');
    el.append(h('section', { class: 'category', 'data-testid': 'category', 'data-category-name': cat.name },
      h('header', { class: 'category-head' },
        h('h3', { text: cat.name.toUpperCase() }),
        owner ? h('span', { class: 'row-actions' },
          h('button', { class: 'icon-btn tiny', 'aria-label': `Create channel in ${cat.name}`, text: '+', onclick: () => createChannelDialog(cat.id) }),
          h('button', { class: 'icon-btn tiny', 'aria-label': `Rename category ${cat.name}`, text: '✎', onclick: () => editChannelDialog(cat) }),
          h('button', { class: 'icon-btn tiny danger', 'aria-label': `Delete category ${cat.name}`, text: '✕', onclick: () => deleteChannelDialog(cat) })) : null),
      h('ul', { class: 'channels' }, children.map((c) => channelRow(c, owner)))));
  }
}

function channelRow(c, owner) {
  const isVoice = isVoiceChannel(c);
  const active = !isVoice && c.id === store.currentChannelId;
  const connectedHere = isVoice && voice && voice.channelId === c.id;
  const badge = c.type === 'text' ? channelBadge(c) : { unread: false, badge: null };
  const li = h('li', { class: `channel ${c.type}${active ? ' active' : ''}${connectedHere ? ' connected' : ''}${badge.unread ? ' unread' : ''}` });
  const btn = h('button', {
    class: 'channel-link',
    'data-testid': 'channel-link', 'data-channel-id': c.id, 'data-channel-name': c.name, 'data-channel-type': c.type, 'data-unread': String(badge.unread),
    'aria-label': isVoice ? `Join ${c.type === 'stage' ? 'stage' : 'voice'} channel ${c.name}` : `Text channel ${c.name}`,
    'aria-current': active ? 'page' : null,
    onclick: () => (isVoice ? joinVoice(c) : selectChannel(c.id)),
  }, h('span', { class: 'chan-icon', 'aria-hidden': 'true' }, icon(c.type === 'stage' ? 'stage' : isVoice ? 'speaker' : 'hash', 16)), h('span', { class: 'chan-name', text: c.name }),
  c.e2ee ? h('span', { class: 'chan-lock', 'data-testid': 'e2ee-lock', title: 'End-to-end encrypted voice', 'aria-label': 'end-to-end encrypted' }, icon('lock', 12)) : null);
  li.append(h('div', { class: 'channel-row' }, btn, badge.badge,
    owner ? h('span', { class: 'row-actions' },
      h('button', { class: 'icon-btn tiny', 'aria-label': `Edit channel ${c.name}`, title: 'Edit channel', text: '✎', onclick: () => editChannelDialog(c) }),
      h('button', { class: 'icon-btn tiny danger', 'aria-label': `Delete channel ${c.name}`, title: 'Delete channel', text: '✕', onclick: () => deleteChannelDialog(c) })) : null));
  if (isVoice) {
    const states = store.voiceStatesIn(c.id);
    if (states.length) {
      const ul = h('ul', { class: 'voice-users', 'data-testid': 'voice-participants', 'data-channel-id': c.id });
      // In our own channel: whom we hear now (large channels carry only the loudest few).
      const heard = voice && voice.channelId === c.id ? voice.heardUsers() : null;
      // Marked only when some participants are not carried to us.
      const limited = !!heard && states.length - 1 > heard.size;
      const row = (v) => {
        const speaking = !!(voice && voice.speaking[v.user_id]) && !(v.self_mute || v.mute || v.suppress);
        const user = store.userById(v.user_id);
        const isHeard = !!(heard && heard.has(v.user_id));
        return h('li', {
          class: `voice-user${speaking ? ' speaking' : ''}${limited && isHeard ? ' heard' : ''}`,
          'data-testid': 'voice-participant', 'data-user-id': v.user_id, 'data-heard': String(isHeard),
          title: limited ? (isHeard ? 'Heard now (one of the loudest speakers)' : 'Not heard right now: only the loudest speakers are carried') : undefined,
          'data-speaking': String(speaking), 'data-muted': String(!!(v.self_mute || v.mute)), 'data-deafened': String(!!(v.self_deaf || v.deaf)),
          'data-suppressed': String(!!v.suppress),
        },
        avatar(user || { id: v.user_id }, 22, speaking ? 'ring' : ''),
        h('span', { class: 'vu-name', text: store.displayName(v.user_id, user, c.server_id) }),
        (v.self_mute || v.mute) ? h('span', { role: 'img', class: 'vu-icon', title: v.mute ? 'Server muted' : 'Muted', 'aria-label': 'muted' }, icon('micOff', 14)) : null,
        (v.suppress && c.type !== 'stage' && !(v.self_mute || v.mute)) ? h('span', { role: 'img', class: 'vu-icon', title: 'May not speak in this channel', 'aria-label': 'suppressed' }, icon('micOff', 14)) : null,
        (v.self_deaf || v.deaf) ? h('span', { role: 'img', class: 'vu-icon', title: v.deaf ? 'Server deafened' : 'Deafened', 'aria-label': 'deafened' }, icon('headphonesOff', 14)) : null,
        v.self_stream ? liveBadge(c, v, store.displayName(v.user_id, user, c.server_id)) : null,
        v.self_video ? h('span', { role: 'img', class: 'vu-icon live', title: 'Camera on', 'aria-label': 'camera on' }, icon('video', 14)) : null);
      };
      if (c.type === 'stage') ul.append(...stageParticipants(c, states, row));
      else for (const v of states) ul.append(row(v));
      li.append(ul);
    }
  }
  return li;
}

/** Go Live: a red LIVE badge on a sharer, with how many watch; in our own channel a button that
 * starts watching (the tile grid shows the share). */
function liveBadge(c, v, name) {
  const n = v.stream_viewers | 0;
  const title = `Live: sharing their screen (${n} watching)`;
  const inChannel = voice && voice.channelId === c.id && v.user_id !== (store.me && store.me.id);
  if (!inChannel) return h('span', { class: 'live-badge', 'data-testid': 'live-badge', title, text: 'LIVE' });
  return h('button', {
    type: 'button', class: 'live-badge', 'data-testid': 'live-badge', title, text: 'LIVE',
    'aria-label': `Watch ${name}'s stream (${n} watching)`,
    onclick: (e) => { e.stopPropagation(); voice.watchStream(v.user_id, true); },
  });
}
