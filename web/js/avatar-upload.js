// Choosing an avatar: pick an image, place a round crop over it (drag to move, slider to size),
// and upload it; the server cuts that square and stores a 256×256 PNG without metadata.

import { api, store, invalidate } from './context.js';
import { h, openDialog, avatar, toast } from './dom.js';

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
    if (file && await cropAndUpload(file)) show();
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

/** Shows the crop view; uploads on Save. Resolves true when the avatar changed. */
async function cropAndUpload(file) {
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
    title: 'Crop your avatar',
    testid: 'avatar-crop',
    content: [h('div', { class: 'avatar-crop', style: { width: `${cw}px`, height: `${ch}px` } }, canvas, box),
      h('label', { class: 'small' }, 'Size ', size)],
    actions: [
      { label: 'Cancel', value: false },
      {
        label: 'Save avatar', submit: true,
        onClick: async () => {
          const crop = { x: Math.round(x / scale), y: Math.round(y / scale), size: Math.round(side / scale) };
          crop.size = Math.min(crop.size, bitmap.width - crop.x, bitmap.height - crop.y);
          applyUser(await api.setAvatar(file, crop));
          return true;
        },
      },
    ],
  });
  bitmap.close();
  return !!changed;
}
