// The file page (/f/<sha256>): the server rendered the facts and every link; this adds copy and
// QR buttons, the preview or player, the swarm, peer-to-peer download, the Nostr events and the
// owner's actions.
import { $ } from './dom.js'
import { config } from './config.js'
import { enhanceFaces } from './faces.js'
import { formatDate } from './format.js'
import { showMedia } from './player.js'
import { showSwarm } from './swarm.js'
import { setupP2P } from './p2p.js'
import { showNostrEvents } from './nostr-events.js'
import { setupOwner } from './owner.js'

export function start () {
  const file = JSON.parse($('#tg-file').textContent)
  enhanceFaces($('#faces'))
  const time = $('.facts time')
  if (time) time.textContent = formatDate(file.created_at)
  if (!$('#description').textContent.trim()) $('#description').remove()
  showMedia(file, $('#media'))
  if (config.features.tracker) showSwarm(file)
  setupP2P(file)
  if (config.features.nostr) showNostrEvents(file)
  setupOwner(file)
}
