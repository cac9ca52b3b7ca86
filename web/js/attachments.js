// Files on messages: how they show (images with their size reserved, a lightbox, players for
// audio and video, download cards for everything else) and how they are sent (attach button,
// drag-and-drop, paste; a tray of chosen files; upload progress with cancel).

import { h, clear, openDialog, toast } from './dom.js';
import { icon } from './icons.js';

/** Largest box an inline image takes in the message list, CSS pixels. */
const BOX_W = 400;
const BOX_H = 300;
/** Most files on one message (the server's limit too). */
export const MAX_FILES = 10;
/** Originals smaller than this are shown while their thumbnail is being made. */
const SHOW_ORIGINAL_BELOW = 2 * 1024 * 1024;

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GB`;
}

/** Width and height that fit the box, keeping the aspect ratio (never scaled up). */
function fit(w, h0) {
  if (!w || !h0) return { w: BOX_W, h: Math.round(BOX_W * 0.5625) };
  const s = Math.min(1, BOX_W / w, BOX_H / h0);
  return { w: Math.max(1, Math.round(w * s)), h: Math.max(1, Math.round(h0 * s)) };
}

/** The attachments of message `m`, or null. */
export function attachmentList(m) {
  const files = m.attachments || [];
  if (!files.length) return null;
  return h('div', { class: 'attachments', 'data-testid': 'attachments' }, files.map((a) => attachmentView(a)));
}

function attachmentView(a) {
  const type = a.content_type || '';
  if (type.startsWith('image/')) return imageView(a);
  if (type.startsWith('video/')) {
    const { w, h: ht } = fit(a.width, a.height);
    return h('div', { class: 'attachment media', 'data-testid': 'attachment-video' },
      h('video', { src: a.url, controls: true, preload: 'metadata', width: w, height: ht, 'aria-label': a.filename }),
      fileLine(a));
  }
  if (type.startsWith('audio/')) {
    return h('div', { class: 'attachment file audio', 'data-testid': 'attachment-audio' },
      fileLine(a), h('audio', { src: a.url, controls: true, preload: 'none', 'aria-label': a.filename }));
  }
  return h('div', { class: 'attachment file', 'data-testid': 'attachment-file' }, fileLine(a));
}

function fileLine(a) {
  return h('div', { class: 'file-line' },
    h('span', { class: 'file-icon', 'aria-hidden': 'true' }, icon('file', 28)),
    h('span', { class: 'file-meta' },
      h('a', { class: 'file-name', href: a.url, download: a.filename, rel: 'noopener', 'data-testid': 'attachment-link', text: a.filename }),
      h('span', { class: 'muted small', text: formatBytes(a.size || 0) })));
}

function imageView(a) {
  const { w, h: ht } = fit(a.width, a.height);
  // GIFs play from the original; others show the thumbnail once made.
  const src = a.content_type === 'image/gif' ? a.url
    : a.thumbnail_url || ((a.size || 0) < SHOW_ORIGINAL_BELOW ? a.url : null);
  const box = h('button', {
    type: 'button', class: 'attachment image', 'data-testid': 'attachment-image',
    'aria-label': `Open image ${a.filename}`, style: { width: `${w}px`, height: `${ht}px` },
    onclick: () => openLightbox(a),
  });
  if (src) {
    box.append(h('img', { src, alt: a.filename, width: w, height: ht, loading: 'lazy', decoding: 'async' }));
  } else {
    box.classList.add('processing');
    box.append(h('span', { class: 'muted small', text: 'Processing image…' }));
  }
  return box;
}

/** The image at full size in a dialog, with a link to the original. */
export function openLightbox(a) {
  const img = h('img', { class: 'lightbox-img', src: a.url, alt: a.filename, 'data-testid': 'lightbox-image' });
  if (a.width && a.height) { img.width = a.width; img.height = a.height; }
  return openDialog({
    title: a.filename,
    testid: 'lightbox',
    wide: true,
    content: [
      h('div', { class: 'lightbox-frame' }, img),
      h('p', { class: 'muted small' },
        a.width && a.height ? `${a.width} × ${a.height} · ` : '', formatBytes(a.size || 0), ' · ',
        h('a', { href: a.url, target: '_blank', rel: 'noopener', 'data-testid': 'lightbox-original', text: 'Open original' })),
    ],
  });
}

/**
 * The composer's file tray: an attach button, a hidden file input, drag-and-drop onto `dropZones`
 * and paste into `input`. Returns { button, tray, take(), restore(files), count() }.
 */
export function setupUploads({ input, dropZones, maxBytes = () => 25 * 1024 * 1024 }) {
  let files = [];
  const picker = h('input', { type: 'file', multiple: true, hidden: true, 'data-testid': 'file-input', tabindex: '-1' });
  const button = h('button', { type: 'button', class: 'icon-btn attach', 'aria-label': 'Attach files', title: 'Attach files', 'data-testid': 'attach-button', text: '+', onclick: () => picker.click() });
  const tray = h('ul', { class: 'upload-tray', 'data-testid': 'upload-tray', 'aria-label': 'Files to send', hidden: true });

  function render() {
    clear(tray);
    tray.hidden = !files.length;
    files.forEach((f, i) => {
      tray.append(h('li', { class: 'upload-chip', 'data-testid': 'upload-chip' },
        h('span', { class: 'file-name', text: f.name || 'pasted image' }),
        h('span', { class: 'muted small', text: formatBytes(f.size) }),
        h('button', { type: 'button', class: 'icon-btn tiny', 'aria-label': `Remove ${f.name}`, text: '✕', onclick: () => { files.splice(i, 1); render(); input.focus(); } })));
    });
  }

  function addFiles(list) {
    for (const f of list) {
      if (files.length >= MAX_FILES) { toast(`At most ${MAX_FILES} files per message.`, 'error'); break; }
      if (f.size > maxBytes()) {
        toast(`${f.name} is ${formatBytes(f.size)}: files may be at most ${formatBytes(maxBytes())}.`, 'error', 8000);
        continue;
      }
      // A pasted screenshot has no useful name.
      const named = f.name && f.name !== 'image.png' ? f : new File([f], `screenshot-${Date.now()}.${(f.type.split('/')[1] || 'png')}`, { type: f.type });
      files.push(named);
    }
    render();
  }

  picker.addEventListener('change', () => { addFiles([...picker.files]); picker.value = ''; input.focus(); });
  input.addEventListener('paste', (e) => {
    const pasted = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (pasted.length) { e.preventDefault(); addFiles(pasted); }
  });
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  for (const zone of dropZones) {
    zone.addEventListener('dragover', (e) => { if (hasFiles(e)) { e.preventDefault(); zone.classList.add('drop-target'); } });
    zone.addEventListener('dragleave', (e) => { if (e.target === zone) zone.classList.remove('drop-target'); });
    zone.addEventListener('drop', (e) => {
      zone.classList.remove('drop-target');
      if (!hasFiles(e)) return;
      e.preventDefault();
      addFiles([...e.dataTransfer.files]);
      input.focus();
    });
  }

  return {
    button, picker, tray,
    count: () => files.length,
    take() { const out = files; files = []; render(); return out; },
    restore(list) { files = [...list, ...files].slice(0, MAX_FILES); render(); },
  };
}

/** Updates a pending message's progress bar in place (no re-render per progress event). */
export function showProgress(nonce, loaded, total) {
  const bar = document.querySelector(`[data-upload-nonce="${CSS.escape(nonce)}"] progress`);
  if (!bar) return;
  bar.max = total || 1;
  bar.value = loaded;
  const label = bar.parentElement.querySelector('.upload-percent');
  if (label) label.textContent = `${Math.floor((loaded / (total || 1)) * 100)}%`;
}

/** The progress line of a message being uploaded. */
export function progressLine(m, onCancel) {
  const u = m.upload;
  return h('div', { class: 'upload-progress', 'data-testid': 'upload-progress', 'data-upload-nonce': m.nonce },
    h('span', { class: 'muted small', text: `Uploading ${u.names.join(', ')} (${formatBytes(u.total)})` }),
    h('progress', { max: u.total || 1, value: u.loaded, 'aria-label': 'Upload progress' }),
    h('span', { class: 'upload-percent small', text: `${Math.floor((u.loaded / (u.total || 1)) * 100)}%` }),
    h('button', { type: 'button', class: 'btn secondary small', 'data-testid': 'upload-cancel', text: 'Cancel', onclick: onCancel }));
}
