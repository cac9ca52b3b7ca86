// Inline SVG icons (stroke style), built with DOM APIs so no emoji font is needed.
const NS = 'http://www.w3.org/2000/svg';

const SHAPES = {
  mic: [['rect', { x: 9, y: 2, width: 6, height: 12, rx: 3 }], ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v4M8 22h8' }]],
  micOff: [['rect', { x: 9, y: 2, width: 6, height: 12, rx: 3 }], ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v4M8 22h8M3 3l18 18' }]],
  headphones: [['path', { d: 'M3 18v-6a9 9 0 0 1 18 0v6M21 19a2 2 0 0 1-2 2h-1v-6h3zM3 19a2 2 0 0 0 2 2h1v-6H3z' }]],
  headphonesOff: [['path', { d: 'M3 18v-6a9 9 0 0 1 18 0v6M21 19a2 2 0 0 1-2 2h-1v-6h3zM3 19a2 2 0 0 0 2 2h1v-6H3zM3 3l18 18' }]],
  lock: [['rect', { x: 5, y: 11, width: 14, height: 10, rx: 2 }], ['path', { d: 'M8 11V7a4 4 0 0 1 8 0v4' }]],
  speaker: [['path', { d: 'M11 5L6 9H2v6h4l5 4zM15.5 8.5a5 5 0 0 1 0 7M19 5a10 10 0 0 1 0 14' }]],
  speakerOff: [['path', { d: 'M11 5L6 9H2v6h4l5 4zM22 9l-6 6M16 9l6 6' }]],
  maximize: [['path', { d: 'M8 3H5a2 2 0 0 0-2 2v3M21 8V5a2 2 0 0 0-2-2h-3M3 16v3a2 2 0 0 0 2 2h3M16 21h3a2 2 0 0 0 2-2v-3' }]],
  leave: [['path', { d: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9' }]],
  users: [['circle', { cx: 9, cy: 7, r: 4 }], ['path', { d: 'M2 21v-2a4 4 0 0 1 4-4h6a4 4 0 0 1 4 4v2M16 3.1a4 4 0 0 1 0 7.8M22 21v-2a4 4 0 0 0-3-3.9' }]],
  crown: [['path', { d: 'M3 18h18L20 7l-5 4-3-6-3 6-5-4z' }]],
  trash: [['path', { d: 'M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6' }]],
  invite: [['circle', { cx: 9, cy: 7, r: 4 }], ['path', { d: 'M2 21v-2a4 4 0 0 1 4-4h6a4 4 0 0 1 4 4v2M19 8v6M16 11h6' }]],
  hash: [['path', { d: 'M4 9h16M4 15h16M10 3L8 21M16 3l-2 18' }]],
  pin: [['path', { d: 'M9 3h6l-1 6 4 4H6l4-4zM12 13v8' }]],
  smile: [['circle', { cx: 12, cy: 12, r: 9 }], ['path', { d: 'M8 14a5 5 0 0 0 8 0M9 9h.01M15 9h.01' }]],
  video: [['rect', { x: 2, y: 6, width: 14, height: 12, rx: 2 }], ['path', { d: 'M16 10l6-4v12l-6-4z' }]],
  videoOff: [['rect', { x: 2, y: 6, width: 14, height: 12, rx: 2 }], ['path', { d: 'M16 10l6-4v12l-6-4zM2 2l20 20' }]],
  screen: [['rect', { x: 2, y: 3, width: 20, height: 14, rx: 2 }], ['path', { d: 'M8 21h8M12 17v4M9 10l3-3 3 3M12 7v6' }]],
  hand: [['path', { d: 'M18 11V6a2 2 0 0 0-4 0v5M14 10V4a2 2 0 0 0-4 0v6M10 10.5V6a2 2 0 0 0-4 0v8M18 8a2 2 0 1 1 4 0v6a8 8 0 0 1-8 8h-2c-2.8 0-4.5-.9-6-2.4l-3.6-3.6a2 2 0 0 1 2.8-2.8L7 15' }]],
  stage: [['circle', { cx: 12, cy: 12, r: 2 }], ['path', { d: 'M4.9 19.1a10 10 0 0 1 0-14.2M19.1 4.9a10 10 0 0 1 0 14.2M7.8 16.2a6 6 0 0 1 0-8.4M16.2 7.8a6 6 0 0 1 0 8.4' }]],
  compass: [['circle', { cx: 12, cy: 12, r: 9 }], ['path', { d: 'M15.5 8.5l-2 5-5 2 2-5z' }]],
  plus: [['path', { d: 'M12 5v14M5 12h14' }]],
  soundboard: [['rect', { x: 3, y: 3, width: 7, height: 7, rx: 1.5 }], ['rect', { x: 14, y: 3, width: 7, height: 7, rx: 1.5 }], ['rect', { x: 3, y: 14, width: 7, height: 7, rx: 1.5 }], ['path', { d: 'M15 15.5h1.5l2.5-2v7l-2.5-2H15z' }]],
  file: [['path', { d: 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z' }], ['path', { d: 'M14 2v6h6' }]],
  bell: [['path', { d: 'M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9M10.3 21a1.94 1.94 0 0 0 3.4 0' }]],
  gear: [['circle', { cx: 12, cy: 12, r: 3 }], ['path', { d: 'M12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1L7 17M17 7l2.1-2.1' }]],
};

export function icon(name, size = 18) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon');
  for (const [tag, attrs] of SHAPES[name] || []) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
  }
  return svg;
}
