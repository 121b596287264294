// "Download with WebTorrent": the file through the BitTorrent swarm in the page itself. The
// WebTorrent browser bundle finds other viewers through the gateway's WebSocket tracker (WebRTC)
// and fetches the rest from the gateway's webseed (the torrent's url-list); the page shows the
// peers and how many bytes came from peers and how many from the webseed. Once it has the file
// it checks the SHA-256 against the file's address, offers the copy to save (and to play), and
// keeps sharing it while the page is open.
import { $, h, show } from './dom.js'
import { config } from './config.js'
import { formatBytes, formatPercent, formatSpeed } from './format.js'
import { loadWebTorrent } from './vendor.js'

export function setupP2P (file) {
  show($('#p2p'))
  const button = $('#p2p-start')
  button.addEventListener('click', () => {
    button.disabled = true
    download(file).catch((e) => {
      $('#p2p-stats').replaceChildren(h('p', { class: 'error', role: 'alert' }, `WebTorrent failed: ${e.message}`))
      show($('#p2p-stats'))
      button.disabled = false
    })
  }, { once: false })
}

async function download (file) {
  const box = $('#p2p-stats')
  const bar = h('progress', { max: 100, value: 0, 'aria-label': 'WebTorrent download' })
  const line = h('p', { class: 'p2p-line' }, 'Starting WebTorrent…')
  const fromPeers = h('span', { class: 'share-peers' })
  const fromSeed = h('span', { class: 'share-webseed' })
  const split = h('p', { class: 'p2p-split muted' })
  const result = h('div', { class: 'p2p-result' })
  box.replaceChildren(bar, line, h('div', { class: 'share', 'aria-hidden': 'true' }, fromPeers, fromSeed), split, result)
  show(box)

  const WebTorrent = await loadWebTorrent()
  const client = new WebTorrent({
    dht: false, lsd: false, utPex: false, natUpnp: false, natPmp: false,
    // no STUN servers: host candidates only; nothing leaves for a third party
    tracker: { rtcConfig: { iceServers: [] } }
  })
  window.addEventListener('pagehide', () => client.destroy())
  const response = await fetch(file.urls.torrent)
  if (!response.ok) throw new Error(`the .torrent answered ${response.status}`)
  const torrentFile = new Uint8Array(await response.arrayBuffer())
  const torrent = client.add(torrentFile, { announce: config.trackers.ws ? [config.trackers.ws] : [] })
  const bytes = { peers: 0, webseed: 0 }
  torrent.on('wire', (wire) => {
    wire.on('download', (n) => {
      if (wire.type === 'webSeed') bytes.webseed += n
      else bytes.peers += n
    })
  })
  torrent.on('error', (e) => { line.textContent = `WebTorrent failed: ${e.message || e}` })

  const render = () => {
    const total = bytes.peers + bytes.webseed || 1
    bar.value = Math.floor(torrent.progress * 100)
    const peers = torrent.wires.filter((w) => w.type !== 'webSeed').length
    line.textContent = torrent.done
      ? `Done · sharing with ${peers} peer${peers === 1 ? '' : 's'} · uploaded ${formatBytes(torrent.uploaded)}`
      : `${formatPercent(torrent.progress)} · ${formatSpeed(torrent.downloadSpeed)} · ${peers} peer${peers === 1 ? '' : 's'}`
    fromPeers.style.width = `${(bytes.peers / total) * 100}%`
    fromSeed.style.width = `${(bytes.webseed / total) * 100}%`
    split.textContent = `From peers: ${formatBytes(bytes.peers)} (${formatPercent(bytes.peers / total)}) · ` +
      `from the webseed: ${formatBytes(bytes.webseed)} (${formatPercent(bytes.webseed / total)})`
    box.dataset.peersBytes = String(bytes.peers)
    box.dataset.webseedBytes = String(bytes.webseed)
    box.dataset.peers = String(peers)
  }
  const timer = setInterval(render, 500)
  render()
  await new Promise((resolve) => (torrent.done ? resolve() : torrent.once('done', resolve)))
  render()
  box.dataset.done = 'true'
  await offer(file, torrent.files[0], result)
  window.addEventListener('pagehide', () => clearInterval(timer))
}

async function offer (file, twFile, result) {
  const blob = await twFile.blob()
  const url = URL.createObjectURL(blob)
  const check = h('p', { class: 'p2p-check' })
  result.append(check, h('p', null, h('a', { class: 'btn primary', href: url, download: file.name }, 'Save the downloaded copy')))
  if (crypto.subtle && blob.size <= 512e6) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
    check.textContent = hex === file.sha256 ? 'SHA-256 matches the file’s address ✓' : 'SHA-256 does NOT match the file’s address'
    check.dataset.verified = String(hex === file.sha256)
  }
  const video = $('#media video, #media audio')
  if (video) {
    result.append(h('p', null, h('button', {
      type: 'button',
      class: 'btn',
      onclick () {
        video.dataset.source = 'webtorrent'
        video.src = url
        video.play().catch(() => {})
      }
    }, 'Play the downloaded copy')))
  }
}
