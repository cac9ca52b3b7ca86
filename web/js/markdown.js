// Safe Markdown subset renderer. Builds DOM nodes only with createElement / textContent /
// createTextNode — message text is never parsed as HTML.
//
// Supported: ```code blocks```, `inline code`, **bold**, *italics* (and _italics_),
// > quotes (line prefix), http/https links (auto-linked, opened in a new tab without opener),
// mentions (see below).

const MAX_DEPTH = 4;

// Mentions: `<@id>` / `<@!id>` (a user), `<@&id>` (a role), `<#id>` (a channel), `@everyone` and
// `@here` (whole words). The renderer asks a resolver what to call each one; the resolver returns
// `{text, color?, me?}` and must never hand back markup: the text goes into textContent.
// Not inside code (rendered verbatim), as the server does not count mentions there either.
const MENTION_RE = /^<(@[!&]?|#)(\d{1,20})>/;
const CUSTOM_EMOJI_RE = /^<(a?):([A-Za-z0-9_]{2,32}):(\d{1,20})>/;
// A word character for this purpose, as on the server: ASCII letters, digits, _ . - and any non-ASCII.
const WORD_CH = /[A-Za-z0-9_.\-\u0080-\uffff]/;
const EVERYONE_RE = /^@(everyone|here)(?![A-Za-z0-9_.\-\u0080-\uffff])/;
const FALLBACK = { user: '@unknown-user', role: '@unknown-role', channel: '#unknown-channel' };
let mentionResolver = null;

/** Sets how mentions are named: fn({kind: 'user'|'role'|'channel'|'everyone'|'here', id}). */
export function setMentionResolver(fn) { mentionResolver = fn; }

function mentionNode(kind, id, doc) {
  let r = null;
  try { r = mentionResolver ? mentionResolver({ kind, id }) : null; } catch { r = null; }
  const known = !!(r && r.text);
  const text = known ? String(r.text) : (FALLBACK[kind] || `@${kind}`);
  const el = doc.createElement(kind === 'channel' && known ? 'button' : 'span');
  if (el.tagName === 'BUTTON') el.type = 'button';
  el.className = `mention ${kind}${known ? '' : ' unknown'}${r && r.me ? ' me' : ''}`;
  el.textContent = text;
  el.dataset.testid = 'mention';
  el.dataset.mentionKind = kind;
  if (id) el.dataset.mentionId = id;
  if (r && typeof r.color === 'string' && /^#[0-9a-f]{6}$/i.test(r.color)) el.style.color = r.color;
  return el;
}

/** Returns a DocumentFragment for `content`. */
export function renderMarkdown(content, doc = document) {
  const frag = doc.createDocumentFragment();
  const text = String(content ?? '');
  // Split out fenced code blocks first: their content is verbatim.
  const fence = /```(?:([a-zA-Z0-9_+-]{1,20})\n)?([\s\S]*?)```/g;
  let last = 0;
  let m;
  while ((m = fence.exec(text)) !== null) {
    if (m.index > last) renderBlocks(text.slice(last, m.index), frag, doc);
    const pre = doc.createElement('pre');
    const code = doc.createElement('code');
    if (m[1]) code.dataset.lang = m[1];
    code.textContent = m[2].replace(/^\n/, '').replace(/\n$/, '');
    pre.append(code);
    frag.append(pre);
    last = fence.lastIndex;
  }
  if (last < text.length) renderBlocks(text.slice(last), frag, doc);
  return frag;
}

function renderBlocks(text, parent, doc) {
  const lines = text.split('\n');
  let quote = null;
  let para = [];
  const flushPara = () => {
    if (!para.length) return;
    const span = doc.createElement('span');
    span.className = 'md-p';
    para.forEach((line, i) => {
      if (i > 0) span.append(doc.createElement('br'));
      renderInline(line, span, doc, 0);
    });
    parent.append(span);
    para = [];
  };
  const flushQuote = () => {
    if (!quote) return;
    const bq = doc.createElement('blockquote');
    quote.forEach((line, i) => {
      if (i > 0) bq.append(doc.createElement('br'));
      renderInline(line, bq, doc, 0);
    });
    parent.append(bq);
    quote = null;
  };
  // Drop a leading/trailing empty line produced by code-fence splitting.
  if (lines.length > 1 && lines[0] === '') lines.shift();
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    const qm = /^>\s?(.*)$/.exec(line);
    if (qm) {
      flushPara();
      if (!quote) quote = [];
      quote.push(qm[1]);
    } else {
      flushQuote();
      para.push(line);
    }
  }
  flushPara();
  flushQuote();
}

const URL_RE = /^https?:\/\/[^\s<>"'`]+/i;

function safeUrl(raw) {
  // Trim trailing punctuation that is usually not part of the link.
  let s = raw;
  while (/[.,;:!?)\]}'"]$/.test(s)) {
    if (s.endsWith(')') && (s.split('(').length - 1) >= (s.split(')').length - 1)) break;
    s = s.slice(0, -1);
  }
  try {
    const u = new URL(s);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    return { href: u.href, text: s };
  } catch {
    return null;
  }
}

export function renderInline(text, parent, doc = document, depth = 0) {
  let buf = '';
  const flush = () => { if (buf) { parent.append(doc.createTextNode(buf)); buf = ''; } };
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    // Escapes: \* \` \_ \> \\
    if (ch === '\\' && i + 1 < text.length && '*_`\\>~'.includes(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === '`') {
      const end = text.indexOf('`', i + 1);
      if (end > i + 1) {
        flush();
        const code = doc.createElement('code');
        code.textContent = text.slice(i + 1, end);
        parent.append(code);
        i = end + 1;
        continue;
      }
    }
    if (depth < MAX_DEPTH && text.startsWith('**', i)) {
      const end = text.indexOf('**', i + 2);
      if (end > i + 2) {
        flush();
        const strong = doc.createElement('strong');
        renderInline(text.slice(i + 2, end), strong, doc, depth + 1);
        parent.append(strong);
        i = end + 2;
        continue;
      }
    }
    if (depth < MAX_DEPTH && (ch === '*' || ch === '_') && text[i + 1] && !/\s/.test(text[i + 1])) {
      // `_` only at word boundaries so snake_case_names stay intact.
      const boundaryOk = ch === '*' || i === 0 || /[\s(]/.test(text[i - 1]);
      let end = text.indexOf(ch, i + 1);
      if (ch === '*') {
        // skip a '**' (bold) start inside
        while (end !== -1 && text[end + 1] === '*') end = text.indexOf('*', end + 2);
      }
      const endOk = end > i + 1 && !/\s/.test(text[end - 1]) &&
        (ch === '*' || end + 1 >= text.length || /[\s).,!?:;]/.test(text[end + 1]));
      if (boundaryOk && endOk) {
        flush();
        const em = doc.createElement('em');
        renderInline(text.slice(i + 1, end), em, doc, depth + 1);
        parent.append(em);
        i = end + 1;
        continue;
      }
    }
    if (ch === '<') {
      // A custom emoji, <:name:id> or <a:name:id> (docs/emoji.md): its image by id.
      const ce = CUSTOM_EMOJI_RE.exec(text.slice(i, i + 60));
      if (ce) {
        flush();
        const img = doc.createElement('img');
        img.className = 'custom-emoji';
        img.src = `/api/v1/emojis/${ce[3]}`;
        img.alt = `:${ce[2]}:`;
        img.title = `:${ce[2]}:`;
        img.draggable = false;
        img.dataset.testid = 'custom-emoji';
        img.dataset.emojiId = ce[3];
        parent.append(img);
        i += ce[0].length;
        continue;
      }
      const mm = MENTION_RE.exec(text.slice(i, i + 25));
      if (mm) {
        flush();
        const kind = mm[1] === '#' ? 'channel' : mm[1] === '@&' ? 'role' : 'user';
        parent.append(mentionNode(kind, mm[2], doc));
        i += mm[0].length;
        continue;
      }
    }
    // <https://…>: a link without a preview (docs/link-previews.md); the brackets are not shown.
    if (ch === '<' && /^<https?:\/\//i.test(text.slice(i, i + 9))) {
      const close = text.indexOf('>', i + 1);
      const inner = close > i ? text.slice(i + 1, close) : '';
      const link = inner && !/\s/.test(inner) ? safeUrl(inner) : null;
      if (link && link.text === inner) {
        flush();
        const a = doc.createElement('a');
        a.href = link.href;
        a.textContent = inner;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        a.dataset.noPreview = '';
        parent.append(a);
        i = close + 1;
        continue;
      }
    }
    if (ch === '@' && (i === 0 || !WORD_CH.test(text[i - 1]))) {
      const em = EVERYONE_RE.exec(text.slice(i, i + 12));
      if (em) {
        flush();
        parent.append(mentionNode(em[1], null, doc));
        i += em[0].length;
        continue;
      }
    }
    if ((ch === 'h' || ch === 'H') && (i === 0 || /[\s(<]/.test(text[i - 1]))) {
      const m = URL_RE.exec(text.slice(i));
      if (m) {
        const link = safeUrl(m[0]);
        if (link) {
          flush();
          const a = doc.createElement('a');
          a.href = link.href;
          a.textContent = link.text;
          a.target = '_blank';
          a.rel = 'noopener noreferrer';
          parent.append(a);
          i += link.text.length;
          continue;
        }
      }
    }
    buf += ch;
    i += 1;
  }
  flush();
}
