// REST client for /api/v1.
//
// - Bearer access token from localStorage; on a 401 it refreshes once with the refresh token
//   (single flight: concurrent 401s share one refresh) and retries the request once.
// - Errors are thrown as ApiError with the server's {code, message, errors} so the UI can show
//   them per field.
// - 429: waits Retry-After (when short) and retries once.

const TOKEN_KEY = 'confab.token';
const REFRESH_KEY = 'confab.refresh_token';

export class ApiError extends Error {
  constructor(status, body, { retryAfter } = {}) {
    const raw = (body && typeof body.message === 'string' && body.message) || `HTTP ${status}`;
    const errors = (body && body.errors && typeof body.errors === 'object') ? body.errors : {};
    const code = body && body.code != null ? body.code : status;
    super(userMessage(status, code, raw, errors, retryAfter));
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.serverMessage = raw;
    this.errors = errors;
  }
}

// What the user reads: what went wrong, in words, and what to do about it.
const FIELD_NAMES = {
  content: 'The message', name: 'The name', username: 'The username', password: 'The password', email: 'The email',
  topic: 'The topic', nickname: 'The nickname', display_name: 'The display name', avatar_url: 'The avatar URL',
  custom_status: 'The status', code: 'The invite code', max_age: 'The expiry', max_uses: 'The number of uses',
};
const NOT_FOUND = {
  10003: 'This channel no longer exists (it may have been deleted). Pick another channel.',
  10004: 'This server no longer exists, or you are no longer a member. Pick another server.',
  10006: 'This invite is invalid or has expired. Ask for a new invite link.',
  10007: 'That person is no longer a member of this server.',
  10008: 'This message no longer exists (it may have been deleted).',
  10013: 'There is no user with that name. Check the spelling.',
  10020: 'That session has already ended.',
};
const sentence = (t) => { const s = String(t).trim(); return s ? s[0].toUpperCase() + s.slice(1).replace(/([^.!?])$/, '$1.') : s; };

export function userMessage(status, code, raw, errors = {}, retryAfter) {
  if (status === 0) return 'Cannot reach the server. Check your internet connection, then try again.';
  if (status === 400 && Object.keys(errors).length) {
    const parts = Object.entries(errors).map(([f, msgs]) => `${FIELD_NAMES[f] || sentence(f.replace(/_/g, ' '))} ${[].concat(msgs).join('; ')}`);
    return `${parts.map(sentence).join(' ')} Change it and try again.`;
  }
  if (status === 400) return `${sentence(raw)} Change what you entered and try again.`;
  if (status === 401) return code === 40001 && raw && !/token|session|expired/i.test(raw) ? `${sentence(raw)} Check them and try again.` : 'Your session has expired. Log in again.';
  if (status === 403 && code === 50007) return `${sentence(raw)} They may have blocked you or turned off messages from people they don't know.`;
  if (status === 403) return `${sentence(raw)} Ask a server admin for the permission if you need it.`;
  if (status === 404) return NOT_FOUND[code] || `${sentence(raw)} It may have been deleted. Reload the page if it still shows.`;
  if (status === 409) return `${sentence(raw)} Choose another and try again.`;
  if (status === 413) return 'That is too large to send. Make it smaller and try again.';
  if (status === 429) {
    const secs = Math.max(1, Math.ceil(Number(retryAfter) || 1));
    return `You are doing that too fast. Wait ${secs} second${secs === 1 ? '' : 's'} and try again.`;
  }
  if (status === 503) return `${sentence(raw)} The server is busy or starting: try again in a moment.`;
  if (status >= 500) return `The server had a problem (HTTP ${status}). Try again in a moment; if it keeps happening, tell the server's administrator.`;
  return `${sentence(raw)} Try again.`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Api {
  constructor({ base = '/api/v1', storage = window.localStorage } = {}) {
    this.base = base;
    this.storage = storage;
    this._refreshing = null;
    this.onAuthLost = () => {};
    this.onTokens = () => {};
  }

  get token() { return this.storage.getItem(TOKEN_KEY); }
  get refreshToken() { return this.storage.getItem(REFRESH_KEY); }
  get loggedIn() { return !!(this.token || this.refreshToken); }

  setTokens(token, refresh) {
    if (token) this.storage.setItem(TOKEN_KEY, token); else this.storage.removeItem(TOKEN_KEY);
    if (refresh) this.storage.setItem(REFRESH_KEY, refresh); else if (refresh === null) this.storage.removeItem(REFRESH_KEY);
    this.onTokens(token);
  }

  clearTokens() {
    this.storage.removeItem(TOKEN_KEY);
    this.storage.removeItem(REFRESH_KEY);
  }

  async _fetch(method, path, body, auth, extraHeaders) {
    const headers = { Accept: 'application/json', ...(extraHeaders || {}) };
    // A Blob (a file) goes as it is, with its own type; anything else as JSON.
    const raw = typeof Blob !== 'undefined' && body instanceof Blob;
    if (body !== undefined) headers['Content-Type'] = raw ? (body.type || 'application/octet-stream') : 'application/json';
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, { code: 0, message: 'Network error: cannot reach the server' });
    }
    return res;
  }

  static async _parse(res) {
    if (res.status === 204) return null;
    const text = await res.text();
    if (!text) return null;
    try { return JSON.parse(text); } catch { return { message: text.slice(0, 200) }; }
  }

  /** Seconds until the access token (a JWT) expires; null when unknown. */
  tokenTtl() {
    const t = this.token;
    if (!t) return null;
    try {
      const payload = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      return typeof payload.exp === 'number' ? payload.exp - Date.now() / 1000 : null;
    } catch { return null; }
  }

  /** Refresh ahead of time when the access token is missing or about to expire. */
  async ensureFreshToken(marginSeconds = 30) {
    const ttl = this.tokenTtl();
    if (this.token && (ttl === null || ttl > marginSeconds)) return true;
    return this.refresh();
  }

  /** Refresh the access token. Shared by concurrent callers. Returns true on success. */
  refresh() {
    if (!this.refreshToken) return Promise.resolve(false);
    if (!this._refreshing) {
      this._refreshing = (async () => {
        try {
          const res = await this._fetch('POST', '/auth/refresh', { refresh_token: this.refreshToken }, false);
          if (!res.ok) {
            if (res.status === 401 || res.status === 400 || res.status === 403) {
              this.clearTokens();
              this.onAuthLost();
            }
            return false;
          }
          const data = await Api._parse(res);
          this.setTokens(data.token, data.refresh_token || undefined);
          return true;
        } catch {
          return false;
        } finally {
          setTimeout(() => { this._refreshing = null; }, 0);
        }
      })();
    }
    return this._refreshing;
  }

  async request(method, path, body, { auth = true, retry = true, headers } = {}) {
    let res = await this._fetch(method, path, body, auth, headers);
    if (res.status === 401 && auth && retry && this.refreshToken) {
      if (await this.refresh()) res = await this._fetch(method, path, body, auth, headers);
    }
    if (res.status === 429 && retry) {
      const after = parseFloat(res.headers.get('Retry-After') || '1');
      if (after <= 5) {
        await sleep(Math.max(0.05, after) * 1000);
        return this.request(method, path, body, { auth, retry: false, headers });
      }
    }
    const data = await Api._parse(res);
    if (!res.ok) {
      if (res.status === 401 && auth) {
        this.clearTokens();
        this.onAuthLost();
      }
      throw new ApiError(res.status, data, { retryAfter: res.headers.get('Retry-After') });
    }
    return data;
  }

  get(path) { return this.request('GET', path); }
  post(path, body) { return this.request('POST', path, body); }
  patch(path, body) { return this.request('PATCH', path, body); }
  del(path) { return this.request('DELETE', path); }
  put(path, body) { return this.request('PUT', path, body); }

  /** An administrative request with an optional audit-log reason (X-Audit-Log-Reason). */
  admin(method, path, body, reason) {
    const r = reason && String(reason).trim();
    // Header values must be ISO-8859-1: percent-encode anything else (the server decodes loosely).
    const headers = r ? { 'X-Audit-Log-Reason': /^[\x20-\x7e]*$/.test(r) ? r : encodeURIComponent(r) } : undefined;
    return this.request(method, path, body, { headers });
  }

  // --- auth
  async register(username, password, email) {
    const body = { username, password };
    if (email) body.email = email;
    const data = await this.request('POST', '/auth/register', body, { auth: false });
    this.setTokens(data.token, data.refresh_token);
    return data;
  }
  async login(username, password) {
    const data = await this.request('POST', '/auth/login', { username, password }, { auth: false });
    this.setTokens(data.token, data.refresh_token);
    return data;
  }
  async logout() {
    const refresh_token = this.refreshToken;
    try {
      await this.request('POST', '/auth/logout', refresh_token ? { refresh_token } : {}, { retry: true });
    } finally {
      this.clearTokens();
    }
  }

  // --- resources
  me() { return this.get('/users/@me'); }
  updateMe(patch) { return this.patch('/users/@me', patch); }
  sessions() { return this.get('/users/@me/sessions'); }
  deleteSession(id) { return this.del(`/users/@me/sessions/${encodeURIComponent(id)}`); }

  servers() { return this.get('/servers'); }
  createServer(name) { return this.post('/servers', { name }); }
  updateServer(id, patch) { return this.patch(`/servers/${id}`, patch); }
  deleteServer(id) { return this.del(`/servers/${id}`); }
  leaveServer(id) { return this.del(`/servers/${id}/members/@me`); }
  channels(serverId) { return this.get(`/servers/${serverId}/channels`); }
  /** One page of members by user id ascending (`after`: the last id of the previous page). */
  members(serverId, { after, limit } = {}) {
    const q = new URLSearchParams();
    if (after) q.set('after', after);
    if (limit) q.set('limit', String(limit));
    const qs = q.toString();
    return this.get(`/servers/${serverId}/members${qs ? `?${qs}` : ''}`);
  }
  presences(serverId) { return this.get(`/servers/${serverId}/presences`); }
  /** TURN servers and credentials for voice (`ice_servers`, `expires_at`). */
  iceServers() { return this.get('/voice/ice-servers'); }
  createChannel(serverId, body) { return this.post(`/servers/${serverId}/channels`, body); }
  updateChannel(id, patch) { return this.patch(`/channels/${id}`, patch); }
  deleteChannel(id) { return this.del(`/channels/${id}`); }
  createInvite(serverId, opts = {}) { return this.post(`/servers/${serverId}/invites`, opts); }
  getInvite(code) { return this.get(`/invites/${encodeURIComponent(code)}`); }
  joinInvite(code) { return this.post(`/invites/${encodeURIComponent(code)}`); }

  messages(channelId, { before, after, around, limit = 50 } = {}) {
    const q = new URLSearchParams();
    if (before) q.set('before', before);
    if (after) q.set('after', after);
    if (around) q.set('around', around);
    if (limit) q.set('limit', String(limit));
    return this.get(`/channels/${channelId}/messages?${q}`);
  }
  /** Message search (docs/search.md) in a server, or in my DMs when `serverId` is null. */
  searchMessages(serverId, query, { cursor, limit = 25 } = {}) {
    const q = new URLSearchParams({ q: query, limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    const base = serverId ? `/servers/${serverId}` : '/users/@me';
    return this.get(`${base}/messages/search?${q}`);
  }
  sendMessage(channelId, content, nonce) {
    return this.post(`/channels/${channelId}/messages`, nonce ? { content, nonce } : { content });
  }
  /**
   * A message with files: multipart (payload_json + files[n]) over XMLHttpRequest, the one
   * browser API that reports upload progress. onProgress(loaded, total); signal aborts it.
   */
  async sendMessageWithFiles(channelId, payload, files, { onProgress, signal } = {}) {
    await this.ensureFreshToken();
    const form = new FormData();
    form.append('payload_json', JSON.stringify(payload));
    files.forEach((f, i) => form.append(`files[${i}]`, f, f.name));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `${this.base}/channels/${channelId}/messages`);
      xhr.setRequestHeader('Accept', 'application/json');
      if (this.token) xhr.setRequestHeader('Authorization', `Bearer ${this.token}`);
      xhr.upload.onprogress = (e) => { if (onProgress) onProgress(e.loaded, e.lengthComputable ? e.total : 0); };
      xhr.onload = () => {
        let data = null;
        try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = { message: xhr.responseText.slice(0, 200) }; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new ApiError(xhr.status, data, { retryAfter: xhr.getResponseHeader('Retry-After') }));
      };
      xhr.onerror = () => reject(new ApiError(0, { code: 0, message: 'Network error: cannot reach the server' }));
      xhr.onabort = () => { const e = new Error('Upload cancelled'); e.name = 'AbortError'; reject(e); };
      if (signal) {
        if (signal.aborted) { xhr.abort(); return; }
        signal.addEventListener('abort', () => xhr.abort(), { once: true });
      }
      xhr.send(form);
    });
  }
  /** Upload an avatar image, cropped to the square (x, y, size) in image pixels, if given. */
  setAvatar(blob, crop) {
    const q = crop ? `?x=${crop.x}&y=${crop.y}&size=${crop.size}` : '';
    return this.request('PUT', `/users/@me/avatar${q}`, blob);
  }
  deleteAvatar() { return this.del('/users/@me/avatar'); }
  editMessage(channelId, id, content) { return this.patch(`/channels/${channelId}/messages/${id}`, { content }); }
  setMessageFlags(channelId, id, flags) { return this.patch(`/channels/${channelId}/messages/${id}`, { flags }); }
  deleteMessage(channelId, id) { return this.del(`/channels/${channelId}/messages/${id}`); }
  typing(channelId) { return this.post(`/channels/${channelId}/typing`); }

  // --- roles, overwrites, moderation (docs/permissions.md)
  roles(serverId) { return this.get(`/servers/${serverId}/roles`); }
  createRole(serverId, body, reason) { return this.admin('POST', `/servers/${serverId}/roles`, body, reason); }
  updateRole(serverId, roleId, patch, reason) { return this.admin('PATCH', `/servers/${serverId}/roles/${roleId}`, patch, reason); }
  deleteRole(serverId, roleId, reason) { return this.admin('DELETE', `/servers/${serverId}/roles/${roleId}`, undefined, reason); }
  addMemberRole(serverId, userId, roleId, reason) { return this.admin('PUT', `/servers/${serverId}/members/${userId}/roles/${roleId}`, undefined, reason); }
  removeMemberRole(serverId, userId, roleId, reason) { return this.admin('DELETE', `/servers/${serverId}/members/${userId}/roles/${roleId}`, undefined, reason); }
  overwrites(channelId) { return this.get(`/channels/${channelId}/permissions`); }
  putOverwrite(channelId, id, body, reason) { return this.admin('PUT', `/channels/${channelId}/permissions/${id}`, body, reason); }
  deleteOverwrite(channelId, id, reason) { return this.admin('DELETE', `/channels/${channelId}/permissions/${id}`, undefined, reason); }
  kick(serverId, userId, reason) { return this.admin('DELETE', `/servers/${serverId}/members/${userId}`, undefined, reason); }
  ban(serverId, userId, reason, deleteMessageSeconds = 0) {
    return this.admin('PUT', `/servers/${serverId}/bans/${userId}`, deleteMessageSeconds ? { delete_message_seconds: deleteMessageSeconds } : {}, reason);
  }
  unban(serverId, userId, reason) { return this.admin('DELETE', `/servers/${serverId}/bans/${userId}`, undefined, reason); }
  bans(serverId) { return this.get(`/servers/${serverId}/bans`); }
  timeout(serverId, userId, until, reason) { return this.admin('PATCH', `/servers/${serverId}/members/${userId}`, { timeout_until: until }, reason); }
  auditLog(serverId, { userId, action, before, limit = 50 } = {}) {
    const q = new URLSearchParams();
    if (userId) q.set('user_id', userId);
    if (action) q.set('action', action);
    if (before) q.set('before', before);
    if (limit) q.set('limit', String(limit));
    return this.get(`/servers/${serverId}/audit-log?${q}`);
  }
  /** Move a member to another voice channel, or out of voice with null (MOVE_MEMBERS). */
  moveMember(serverId, userId, channelId, reason) { return this.admin('PATCH', `/servers/${serverId}/members/${userId}`, { channel_id: channelId }, reason); }

  // --- stage channels (docs/gateway.md, "Stage channels")
  /** Own stage state: `{suppress?, request_to_speak?}` in the stage channel we are in. */
  updateMyVoiceState(serverId, channelId, patch) { return this.patch(`/servers/${serverId}/voice-states/@me`, { channel_id: channelId, ...patch }); }
  /** A member's: suppress false invites to speak, true moves to the audience (MUTE_MEMBERS). */
  updateVoiceState(serverId, userId, channelId, suppress) { return this.patch(`/servers/${serverId}/voice-states/${userId}`, { channel_id: channelId, suppress }); }
  invites(serverId) { return this.get(`/servers/${serverId}/invites`); }

  // --- soundboard (docs/soundboard.md)
  sounds(serverId) { return this.get(`/servers/${serverId}/soundboard-sounds`); }
  /** Uploads a sound file (a Blob) with its name, optional emoji and volume 0..1. */
  uploadSound(serverId, file, { name, emoji, volume } = {}) {
    const q = new URLSearchParams({ name: name || '' });
    if (emoji) q.set('emoji', emoji);
    if (volume != null) q.set('volume', String(volume));
    return this.request('POST', `/servers/${serverId}/soundboard-sounds?${q}`, file);
  }
  // --- custom emoji and stickers (docs/emoji.md)
  emojis(serverId) { return this.get(`/servers/${serverId}/emojis`); }
  /** Uploads an emoji image (a Blob); roles: ids allowed to use it, [] = everyone. */
  uploadEmoji(serverId, file, { name, roles = [] } = {}) {
    const q = new URLSearchParams({ name: name || '' });
    if (roles.length) q.set('roles', roles.join(','));
    return this.request('POST', `/servers/${serverId}/emojis?${q}`, file);
  }
  updateEmoji(serverId, emojiId, patch) { return this.patch(`/servers/${serverId}/emojis/${emojiId}`, patch); }
  deleteEmoji(serverId, emojiId) { return this.del(`/servers/${serverId}/emojis/${emojiId}`); }
  stickers(serverId) { return this.get(`/servers/${serverId}/stickers`); }
  uploadSticker(serverId, file, { name, description } = {}) {
    const q = new URLSearchParams({ name: name || '' });
    if (description) q.set('description', description);
    return this.request('POST', `/servers/${serverId}/stickers?${q}`, file);
  }
  updateSticker(serverId, stickerId, patch) { return this.patch(`/servers/${serverId}/stickers/${stickerId}`, patch); }
  deleteSticker(serverId, stickerId) { return this.del(`/servers/${serverId}/stickers/${stickerId}`); }
  sendSticker(channelId, stickerId, nonce) {
    return this.post(`/channels/${channelId}/messages`, { content: '', nonce, sticker_ids: [stickerId] });
  }
  deleteSound(serverId, soundId) { return this.del(`/servers/${serverId}/soundboard-sounds/${soundId}`); }
  playSound(channelId, soundId) { return this.request('POST', `/channels/${channelId}/soundboard/play`, { sound_id: soundId }, { retry: false }); }
  /** A sound's audio as an ArrayBuffer. */
  async soundAudio(serverId, soundId) {
    const path = `/servers/${serverId}/soundboard-sounds/${soundId}/audio`;
    let res = await this._fetch('GET', path, undefined, true, { Accept: 'audio/*' });
    if (res.status === 401 && this.refreshToken && await this.refresh()) res = await this._fetch('GET', path, undefined, true, { Accept: 'audio/*' });
    if (!res.ok) throw new ApiError(res.status, await Api._parse(res));
    return res.arrayBuffer();
  }
  // --- safety (docs/safety.md)
  automodRules(serverId) { return this.get(`/servers/${serverId}/automod/rules`); }
  createAutomodRule(serverId, rule) { return this.post(`/servers/${serverId}/automod/rules`, rule); }
  updateAutomodRule(serverId, ruleId, patch) { return this.patch(`/servers/${serverId}/automod/rules/${ruleId}`, patch); }
  deleteAutomodRule(serverId, ruleId) { return this.del(`/servers/${serverId}/automod/rules/${ruleId}`); }
  safetySettings(serverId) { return this.get(`/servers/${serverId}/safety`); }
  updateSafety(serverId, patch) { return this.patch(`/servers/${serverId}/safety`, patch); }
  verifyMember(serverId) { return this.post(`/servers/${serverId}/members/@me/verify`); }
  createReport(serverId, report) { return this.post(`/servers/${serverId}/reports`, report); }
  reports(serverId, status = 'open') { return this.get(`/servers/${serverId}/reports?status=${encodeURIComponent(status)}`); }
  resolveReport(serverId, reportId, body) { return this.post(`/servers/${serverId}/reports/${reportId}/resolve`, body); }
  revokeInvite(code, reason) { return this.admin('DELETE', `/invites/${encodeURIComponent(code)}`, undefined, reason); }

  // --- reactions and pins
  _reactionPath(channelId, messageId, emoji) { return `/channels/${channelId}/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`; }
  addReaction(channelId, messageId, emoji) { return this.put(this._reactionPath(channelId, messageId, emoji)); }
  removeReaction(channelId, messageId, emoji) { return this.del(this._reactionPath(channelId, messageId, emoji)); }
  reactors(channelId, messageId, emoji) { return this.get(this._reactionPath(channelId, messageId, emoji)); }
  pins(channelId) { return this.get(`/channels/${channelId}/pins`); }
  pin(channelId, messageId) { return this.put(`/channels/${channelId}/pins/${messageId}`); }
  unpin(channelId, messageId) { return this.del(`/channels/${channelId}/pins/${messageId}`); }
}
