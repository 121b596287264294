// Every face of a stored file (the JSON of GET /api/files/<sha256> and of an upload): magnet,
// .torrent, download, webseed, stream, Blossom URL, blossom: URI, metadata. The file page's
// server-rendered list (tgateway/web/pages.py `faces`) has the same entries in the same order;
// `enhanceFaces` adds copy and QR buttons to either.
import { h, $$ } from './dom.js'
import { copyButton } from './copy.js'
import { qrCode } from './qr.js'

export function faceList (file) {
  const urls = file.urls
  const out = [
    ['magnet', 'Magnet link', file.magnet],
    ['torrent', '.torrent file', urls.torrent],
    ['download', 'Direct download', urls.download],
    ['webseed', 'Webseed (BEP 19)', urls.webseed],
    ['stream', 'Stream', urls.stream]
  ]
  if (urls.blossom) out.push(['blossom', 'Blossom URL', urls.blossom])
  if (file.blossom_uri) out.push(['blossom_uri', 'blossom: URI (BUD-10)', file.blossom_uri])
  out.push(['metadata', 'Metadata (JSON)', urls.metadata])
  return out.map(([key, label, url]) => ({ key, label, url }))
}

const WITH_QR = new Set(['magnet', 'blossom_uri', 'download'])

export function renderFaces (file) {
  const list = h('ul', { class: 'faces' },
    faceList(file).map(({ key, label, url }) =>
      h('li', { class: 'face', dataset: { face: key } },
        h('span', { class: 'face-label' }, label), ' ',
        h('a', { class: 'face-url', href: url }, url))))
  enhanceFaces(list)
  return list
}

export function enhanceFaces (list) {
  for (const item of $$('li.face', list)) {
    if (item.querySelector('.face-tools')) continue
    const link = item.querySelector('a.face-url')
    const label = item.querySelector('.face-label').textContent
    const tools = h('span', { class: 'face-tools' }, copyButton(link.getAttribute('href'), label))
    if (WITH_QR.has(item.dataset.face)) {
      const box = h('div', { class: 'qr', hidden: true })
      const button = h('button', {
        type: 'button',
        class: 'btn small',
        'aria-expanded': 'false',
        'aria-label': `QR code of the ${label}`,
        async onclick () {
          const open = box.hidden
          if (open && !box.firstChild) box.append(await qrCode(link.getAttribute('href'), `QR code of the ${label}`))
          box.hidden = !open
          button.setAttribute('aria-expanded', String(open))
        }
      }, 'QR')
      tools.append(button)
      item.append(tools, box)
    } else {
      item.append(tools)
    }
  }
}
