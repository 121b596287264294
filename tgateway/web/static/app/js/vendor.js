// The vendored libraries (tgateway/web/static/vendor, versions in MANIFEST.json), loaded on
// first use only: a page that never plays HLS never downloads hls.js.
import { config } from './config.js'

const loading = {}

function moduleOf (role) {
  if (!loading[role]) loading[role] = import(config.vendor[role])
  return loading[role]
}

export async function loadHls () {
  return (await moduleOf('hls')).default
}

export async function loadWebTorrent () {
  return (await moduleOf('webtorrent')).default
}

export function loadQr () {
  return moduleOf('qr')
}

// nostr-tools ships its browser bundle as a classic script that sets window.NostrTools.
export function loadNostrTools () {
  if (!loading.nostr) {
    loading.nostr = new Promise((resolve, reject) => {
      if (window.NostrTools) return resolve(window.NostrTools)
      const script = document.createElement('script')
      script.src = config.vendor.nostr
      script.onload = () => resolve(window.NostrTools)
      script.onerror = () => {
        loading.nostr = null
        reject(new Error('nostr-tools could not be loaded'))
      }
      document.head.append(script)
    })
  }
  return loading.nostr
}

export function hlsWorkerUrl () {
  return config.vendor.hls_worker
}
