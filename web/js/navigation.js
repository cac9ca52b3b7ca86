// Moving around: selecting a server (or the DMs home) or a text channel.

import { store, invalidate } from './context.js';
import { closePins } from './community.js';
import { closeSidebarOnMobile } from './drawers.js';
import { renderMessages, ensureMessagesLoaded } from './messages.js';

export function selectServer(id) {
  closePins();
  store.selectServer(id);
  closeSidebarOnMobile();
  invalidate(['all']);
}

export function selectChannel(id) {
  closePins();
  store.selectChannel(id);
  closeSidebarOnMobile();
  invalidate(['channels', 'header', 'typing', 'composer', 'home', 'members']);
  renderMessages({ reset: true });
  ensureMessagesLoaded();
}
