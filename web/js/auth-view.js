// The auth view: the login / register screen, and logging out back to it.

import { api, store, gateway, voice, setUi, pendingInvite } from './context.js';
import { h, clear, field, showFieldErrors } from './dom.js';

let startApp = () => {};

/** `start` builds the app once logged in (app.js). */
export function initAuthView({ start }) { startApp = start; }

export function showAuth(mode = 'login', message = '') {
  setUi(null);
  document.title = 'Confab';
  const root = clear(document.getElementById('app'));
  const isRegister = mode === 'register';
  const username = field({ label: 'Username', name: 'username', autocomplete: 'username', required: true, maxlength: 32 });
  const password = field({ label: 'Password', name: 'password', type: 'password', autocomplete: isRegister ? 'new-password' : 'current-password', required: true });
  const email = isRegister ? field({ label: 'Email (optional)', name: 'email', type: 'email', autocomplete: 'email' }) : null;
  const formError = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'auth-error', hidden: !message, text: message });
  const submit = h('button', { type: 'submit', class: 'btn primary block', text: isRegister ? 'Register' : 'Log in' });
  const form = h('form', { class: 'auth-card', 'aria-label': isRegister ? 'Register' : 'Log in', novalidate: true },
    h('h1', { text: isRegister ? 'Create an account' : 'Welcome back!' }),
    h('p', { class: 'muted', text: isRegister ? 'Join your friends on Confab.' : 'We\'re so excited to see you again!' }),
    formError, username.el, password.el, email && email.el, submit,
    h('p', { class: 'muted small' },
      isRegister ? 'Already have an account? ' : 'Need an account? ',
      h('button', { type: 'button', class: 'link-btn', text: isRegister ? 'Log in' : 'Register',
        onclick: () => showAuth(isRegister ? 'login' : 'register') })),
    pendingInvite ? h('p', { class: 'muted small', text: `You've been invited to join a server (invite ${pendingInvite}). Log in to accept.` }) : null,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const errs = {};
    const u = username.input.value.trim();
    const p = password.input.value;
    if (!u) errs.username = ['Username is required.'];
    if (!p) errs.password = ['Password is required.'];
    else if (isRegister && p.length < 8) errs.password = ['Password must be at least 8 characters.'];
    showFieldErrors(form, errs);
    formError.hidden = true;
    if (Object.keys(errs).length) return;
    submit.disabled = true;
    try {
      if (isRegister) await api.register(u, p, email.input.value.trim() || undefined);
      else await api.login(u, p);
      startApp();
    } catch (err) {
      showFieldErrors(form, err.errors || {});
      formError.textContent = err.message || 'Something went wrong';
      formError.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('div', { class: 'auth-page' }, form));
  username.input.focus();
}

export async function logout() {
  if (voice) voice.leave();
  gateway.close();
  try { await api.logout(); } catch { /* tokens are cleared anyway */ }
  logoutLocal();
}

export function logoutLocal(message = '') {
  if (voice && voice.channelId) voice.leave();
  gateway.close();
  store.reset();
  showAuth('login', message);
}
