// Tiny DOM helpers. Text always goes through textContent / text nodes, never innerHTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k in el && typeof v !== 'string' && k !== 'list') el[k] = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** Append children, skipping null/false (Element.append would print "null"). */
export function add(el, ...children) { append(el, children); return el; }

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.append(c);
    else el.append(document.createTextNode(String(c)));
  }
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function safeHttpUrl(raw) {
  if (!raw) return null;
  try {
    const u = new URL(raw, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch { return null; }
}

function luminance(hex) {
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
}
export function contrast(a, b) {
  const x = luminance(a); const y = luminance(b);
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}

/**
 * A role's colour as text on a dark background: the colour itself when it reads well (4.5:1),
 * else mixed with white just enough, so any colour a server picks stays legible.
 */
export function readableOn(hex, bg = '#2b2d31', min = 4.6) {
  if (!/^#[0-9a-f]{6}$/i.test(hex || '')) return hex;
  let out = hex;
  for (let t = 0; t <= 1.0001 && contrast(out, bg) < min; t += 0.05) {
    out = `#${[1, 3, 5].map((i) => Math.round(parseInt(hex.slice(i, i + 2), 16) * (1 - t) + 255 * t).toString(16).padStart(2, '0')).join('')}`;
  }
  return out;
}

// Avatar backgrounds: each keeps white initials at a contrast of at least 4.5:1 (WCAG AA).
const COLORS = ['#5865f2', '#1f7a44', '#a0620a', '#c42b2e', '#b82c77', '#7d3c98', '#11806a', '#a84e0c'];
export function colorFor(id) {
  let x = 0;
  for (const ch of String(id || '')) x = (x * 31 + ch.charCodeAt(0)) >>> 0;
  return COLORS[x % COLORS.length];
}

export function avatar(user, size = 32, extraClass = '') {
  const name = (user && (user.display_name || user.username)) || '?';
  const wrap = h('span', { class: `avatar ${extraClass}`, style: { width: `${size}px`, height: `${size}px` }, 'aria-hidden': 'true' });
  const src = user && safeHttpUrl(user.avatar_url);
  if (src) {
    const img = h('img', { alt: '', width: size, height: size, referrerpolicy: 'no-referrer', loading: 'lazy' });
    img.src = src;
    img.addEventListener('error', () => { img.remove(); wrap.textContent = initials(name); });
    wrap.append(img);
  } else {
    wrap.style.background = colorFor(user && user.id);
    wrap.textContent = initials(name);
  }
  return wrap;
}

export function initials(name) {
  const parts = String(name).trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return '?';
  if (parts.length === 1) return [...parts[0]].slice(0, 2).join('').toUpperCase();
  return (parts[0][0] + parts[1][0]).toUpperCase();
}

/** A modal <dialog>. content: Node(s). Resolves with the value passed to close(). */
export function openDialog({ title, content, actions = [], testid, onOpen, wide = false }) {
  return new Promise((resolve) => {
    const errorBox = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'dialog-error' });
    const dlg = h('dialog', { class: `dialog${wide ? ' wide' : ''}`, 'aria-labelledby': 'dlg-title', 'data-testid': testid || 'dialog' });
    let result;
    const close = (value) => { result = value; dlg.close(); };
    const api = {
      close,
      dialog: dlg,
      setError(msg) { errorBox.textContent = msg || ''; errorBox.hidden = !msg; },
    };
    const form = h('form', { method: 'dialog', class: 'dialog-form' });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const submit = actions.find((a) => a.submit);
      if (submit) run(submit);
    });
    const buttons = actions.map((a) => {
      const b = h('button', {
        type: a.submit ? 'submit' : 'button',
        class: `btn ${a.kind || (a.submit ? 'primary' : 'secondary')}`,
        text: a.label,
        'aria-label': a.ariaLabel || a.label,
      });
      if (!a.submit) b.addEventListener('click', () => run(a));
      return b;
    });
    async function run(a) {
      if (!a.onClick) { close(a.value); return; }
      buttons.forEach((b) => { b.disabled = true; });
      api.setError('');
      showFieldErrors(dlg, {});
      try {
        const v = await a.onClick(api);
        if (v !== false) close(v === undefined ? a.value : v);
      } catch (e) {
        api.setError(e && e.message ? e.message : String(e));
        if (e && e.errors) showFieldErrors(dlg, e.errors);
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    }
    form.append(
      h('header', { class: 'dialog-head' },
        h('h2', { id: 'dlg-title', text: title }),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close dialog', text: '✕', onclick: () => close(undefined) })),
      errorBox,
      h('div', { class: 'dialog-body' }, content),
      actions.length ? h('footer', { class: 'dialog-actions' }, buttons) : null,
    );
    dlg.append(form);
    dlg.addEventListener('close', () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
    if (onOpen) onOpen(api);
    const first = dlg.querySelector('input, textarea, select');
    if (first) first.focus();
  });
}

/** Labelled input with a slot for its field errors. */
export function field({ label, name, type = 'text', value = '', placeholder = '', autocomplete, required, maxlength, testid }) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const input = h(type === 'textarea' ? 'textarea' : 'input', {
    id, name, placeholder, autocomplete, required, maxlength,
    'data-testid': testid || `field-${name}`,
    'aria-describedby': `${id}-err`,
  });
  if (type !== 'textarea') input.type = type;
  input.value = value ?? '';
  const err = h('div', { class: 'field-error', id: `${id}-err`, 'data-error-for': name, role: 'alert' });
  return { el: h('div', { class: 'field' }, h('label', { for: id, text: label }), input, err), input, err };
}

/** Show `errors` ({field: [msg]}) under the matching fields in `root`; clears the others. */
export function showFieldErrors(root, errors = {}) {
  for (const slot of root.querySelectorAll('[data-error-for]')) {
    const msgs = errors[slot.dataset.errorFor];
    slot.textContent = Array.isArray(msgs) ? msgs.join(' ') : (msgs ? String(msgs) : '');
    const input = slot.parentElement.querySelector('input, textarea, select');
    if (input) input.setAttribute('aria-invalid', msgs ? 'true' : 'false');
  }
}

let toastRoot = null;
export function toast(message, kind = 'info', ms = 5000) {
  if (!toastRoot) {
    toastRoot = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite', 'data-testid': 'toasts' });
    document.body.append(toastRoot);
  }
  const t = h('div', { class: `toast ${kind}`, text: message });
  toastRoot.append(t);
  setTimeout(() => t.remove(), ms);
}

// One floating tooltip for the narrow icon-only buttons (the server rail): shown on hover and on
// keyboard focus, beside the button, outside any scrolling container.
let tipEl = null;
export function tooltip(el, text) {
  const show = () => {
    if (!tipEl) { tipEl = h('div', { class: 'tooltip', role: 'tooltip', id: 'confab-tooltip', 'data-testid': 'tooltip' }); document.body.append(tipEl); }
    tipEl.textContent = text;
    const r = el.getBoundingClientRect();
    tipEl.style.left = `${Math.round(r.right + 10)}px`;
    tipEl.style.top = `${Math.round(r.top + r.height / 2)}px`;
    tipEl.hidden = false;
  };
  const hide = () => { if (tipEl) tipEl.hidden = true; };
  el.addEventListener('mouseenter', show);
  el.addEventListener('focus', () => { if (el.matches(':focus-visible')) show(); });
  el.addEventListener('mouseleave', hide);
  el.addEventListener('blur', hide);
  el.addEventListener('click', hide);
  return el;
}
