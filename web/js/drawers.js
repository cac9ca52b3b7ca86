// The drawers of narrow windows: the channel list from the left, the member list from the right.

import { ui } from './context.js';

export function closeSidebarOnMobile() { if (ui) ui.shell.classList.remove('show-sidebar'); syncDrawerButtons(); }

// Below 680 px the rail and channel list slide in from the left; below 1000 px the member list
// slides in from the right. On a wide window the member button shows or hides the column.
const narrow = () => window.matchMedia('(max-width: 1000px)').matches;
export function toggleDrawer(which) {
  const sh = ui.shell.classList;
  if (which === 'members' && !narrow()) { sh.toggle('hide-members'); syncDrawerButtons(); return; }
  const cls = which === 'members' ? 'show-members' : 'show-sidebar';
  const open = !sh.contains(cls);
  sh.remove('show-members', 'show-sidebar');
  if (open) sh.add(cls);
  syncDrawerButtons();
  if (open) {
    const target = which === 'members' ? ui.members : ui.channelList;
    const first = target.querySelector('[aria-current="page"], button, [tabindex="0"]');
    if (first) first.focus();
  }
}
export function closeDrawers() {
  if (!ui) return;
  ui.shell.classList.remove('show-members', 'show-sidebar');
  syncDrawerButtons();
}
export function syncDrawerButtons() {
  if (!ui) return;
  const sh = ui.shell.classList;
  ui.chatHeader.querySelector('.menu-btn')?.setAttribute('aria-expanded', String(sh.contains('show-sidebar')));
  const membersShown = narrow() ? sh.contains('show-members') : !sh.contains('hide-members');
  ui.chatHeader.querySelector('.members-btn')?.setAttribute('aria-pressed', String(membersShown));
}

