// Choosing an avatar or a server icon: pick an image, place a round crop over it (drag to move,
// slider to size), and upload it; the server cuts that square and stores a 256×256 PNG without
// metadata.

import { api, store, invalidate } from './context.js';
import { h, clear, openDialog, avatar, toast } from './dom.js';
import { addSettingsTab } from './community.js';
import { PERM } from './state.js';

const VIEW = 320;  // the crop view's longest side, CSS pixels

/** The "Avatar" section of the settings dialog. */
export function avatarSection() {
  const preview = h('span', { class: 'avatar-preview', 'data-testid': 'avatar-preview' });
  const show = () => { preview.replaceChildren(avatar(store.me, 64)); };
  show();
  const picker = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/gif,image/webp', hidden: true, 'data-testid': 'avatar-file' });
  picker.addEventListener('change', async () => {
    const file = picker.files[0];
    picker.value = '';
    if (file && await cropAndUpload(file, 'Crop your avatar', 'Save avatar', async (blob, crop) => applyUser(await api.setAvatar(blob, crop)))) show();
  });
  const remove = h('button', {
    type: 'button', class: 'btn secondary', text: 'Remove', 'data-testid': 'avatar-remove',
    onclick: async () => {
      try { applyUser(await api.deleteAvatar()); show(); } catch (e) { toast(`Could not remove the avatar: ${e.message}`, 'error'); }
    },
  });
  return h('section', { class: 'settings-section', 'aria-label': 'Avatar' },
    h('h3', { text: 'Avatar' }),
    h('div', { class: 'row' }, preview,
      h('button', { type: 'button', class: 'btn primary', text: 'Upload image…', 'data-testid': 'avatar-upload', onclick: () => picker.click() }),
      remove, picker));
}

function applyUser(u) {
  store.apply('USER_UPDATE', u);
  invalidate(['members', 'messages', 'userpanel', 'channels']);
}

/** Shows the crop view; `upload(file, crop)` on Save. Resolves true when it was saved. */
async function cropAndUpload(file, title, saveLabel, upload) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    toast('That file is not an image this browser can read.', 'error');
    return false;
  }
  const scale = Math.min(1, VIEW / Math.max(bitmap.width, bitmap.height));
  const cw = Math.round(bitmap.width * scale);
  const ch = Math.round(bitmap.height * scale);
  const canvas = h('canvas', { width: cw, height: ch, 'aria-hidden': 'true' });
  canvas.getContext('2d').drawImage(bitmap, 0, 0, cw, ch);
  // The crop square, in view pixels.
  let side = Math.min(cw, ch);
  let x = (cw - side) / 2;
  let y = (ch - side) / 2;
  const box = h('div', { class: 'crop-box', 'data-testid': 'crop-box' });
  const place = () => {
    side = Math.max(16, Math.min(side, cw, ch));
    x = Math.max(0, Math.min(x, cw - side));
    y = Math.max(0, Math.min(y, ch - side));
    Object.assign(box.style, { left: `${x}px`, top: `${y}px`, width: `${side}px`, height: `${side}px` });
  };
  place();
  let drag = null;
  box.addEventListener('pointerdown', (e) => { drag = { px: e.clientX, py: e.clientY, x, y }; box.setPointerCapture(e.pointerId); });
  box.addEventListener('pointermove', (e) => { if (!drag) return; x = drag.x + e.clientX - drag.px; y = drag.y + e.clientY - drag.py; place(); });
  box.addEventListener('pointerup', () => { drag = null; });
  const size = h('input', { type: 'range', min: '16', max: String(Math.min(cw, ch)), value: String(side), 'aria-label': 'Crop size', 'data-testid': 'crop-size' });
  size.addEventListener('input', () => {
    const c = { x: x + side / 2, y: y + side / 2 };
    side = Number(size.value);
    x = c.x - side / 2; y = c.y - side / 2;
    place();
  });
  const changed = await openDialog({
    title,
    testid: 'avatar-crop',
    content: [h('div', { class: 'avatar-crop', style: { width: `${cw}px`, height: `${ch}px` } }, canvas, box),
      h('label', { class: 'small' }, 'Size ', size)],
    actions: [
      { label: 'Cancel', value: false },
      {
        label: saveLabel, submit: true,
        onClick: async () => {
          const crop = { x: Math.round(x / scale), y: Math.round(y / scale), size: Math.round(side / scale) };
          crop.size = Math.min(crop.size, bitmap.width - crop.x, bitmap.height - crop.y);
          await upload(file, crop);
          return true;
        },
      },
    ],
  });
  bitmap.close();
  return !!changed;
}

/** The server settings' "Icon" tab (MANAGE_SERVER). */
function iconTab(server, _view, panel) {
  clear(panel);
  const canManage = (store.myPermissions(server.id) & PERM.MANAGE_SERVER) !== 0n;
  const current = () => store.servers.get(server.id) || server;
  const preview = h('span', { class: 'icon-preview', 'data-testid': 'icon-preview' });
  const show = () => {
    const s = current();
    preview.replaceChildren(s.icon_url
      ? h('img', { src: s.icon_url, alt: `${s.name} icon`, width: 64, height: 64 })
      : h('span', { class: 'muted small', text: 'No icon: the rail shows the initials.' }));
  };
  show();
  const picker = h('input', { type: 'file', accept: 'image/png,image/jpeg,image/gif,image/webp', hidden: true, 'data-testid': 'icon-file' });
  picker.addEventListener('change', async () => {
    const file = picker.files[0];
    picker.value = '';
    if (!file) return;
    const saved = await cropAndUpload(file, 'Crop the server icon', 'Save icon', async (blob, crop) => {
      const q = `?x=${crop.x}&y=${crop.y}&size=${crop.size}`;
      const s = await api.request('PUT', `/servers/${server.id}/icon${q}`, blob);
      store.apply('SERVER_UPDATE', s);
      invalidate(['servers', 'header']);
    });
    if (saved) show();
  });
  panel.append(h('div', { class: 'row' }, preview,
    canManage ? h('button', { type: 'button', class: 'btn primary', text: 'Upload icon…', 'data-testid': 'icon-upload', onclick: () => picker.click() }) : null,
    canManage ? h('button', {
      type: 'button', class: 'btn secondary', text: 'Remove icon', 'data-testid': 'icon-remove',
      onclick: async () => {
        try {
          const s = await api.del(`/servers/${server.id}/icon`);
          store.apply('SERVER_UPDATE', s);
          invalidate(['servers', 'header']);
          show();
        } catch (e) { toast(`Could not remove the icon: ${e.message}`, 'error'); }
      },
    }) : null, picker),
    canManage ? null : h('p', { class: 'muted small', text: 'Changing the icon needs the Manage Server permission.' }));
}

/** Adds the Icon tab to the server settings (called once at start). */
export function initServerIcons() { addSettingsTab('icon', 'Icon', iconTab); }
