// The card shown when an upload is done: name, size, sha256 and every face of the file.
import { h } from './dom.js'
import { renderFaces } from './faces.js'
import { formatBytes } from './format.js'

export function fileCard (file) {
  const page = `/f/${file.sha256}`
  return h('article', { class: 'card', dataset: { sha256: file.sha256 } },
    h('header', { class: 'card-head' },
      h('h3', null, h('a', { href: page }, file.title || file.name)),
      h('p', { class: 'muted' }, `${formatBytes(file.size)} · ${file.mime_type}`,
        file.new === false ? ' · already stored here' : '')),
    h('p', { class: 'card-hash' }, h('span', { class: 'muted' }, 'SHA-256 '),
      h('code', { class: 'hash' }, file.sha256)),
    renderFaces(file),
    h('div', { class: 'actions' },
      h('a', { class: 'btn primary', href: page }, 'Open file page'),
      h('a', { class: 'btn', href: file.urls.download, download: file.name }, 'Download')))
}
