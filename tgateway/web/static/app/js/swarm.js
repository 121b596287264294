// The file's swarm as the gateway's tracker sees it (GET /api/files/<sha256>/swarm).
import { $, h, show } from './dom.js'
import { api } from './api.js'
import { poll } from './poll.js'

export function showSwarm (file) {
  const section = $('#swarm')
  const stats = $('#swarm-stats')
  poll(async () => {
    const s = await api(`/api/files/${file.sha256}/swarm`, { auth: false })
    stats.replaceChildren(
      h('div', null, h('dt', null, 'Seeders'), h('dd', { dataset: { stat: 'seeders' } }, s.seeders)),
      h('div', null, h('dt', null, 'Leechers'), h('dd', { dataset: { stat: 'leechers' } }, s.leechers)),
      h('div', null, h('dt', null, 'Completed'), h('dd', { dataset: { stat: 'completed' } }, s.completed)),
      h('div', null, h('dt', null, 'Webseed'), h('dd', null, s.webseed ? 'yes' : 'no')))
    show(section)
  }, 15000)
}
