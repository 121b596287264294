// QR codes as SVG built from uqr's module matrix (one path of dark modules on a light square).
import { h } from './dom.js'
import { loadQr } from './vendor.js'

export async function qrCode (text, label) {
  const { encode } = await loadQr()
  const { size, data } = encode(text, { ecc: 'L', border: 2 })
  let d = ''
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) if (data[y][x]) d += `M${x} ${y}h1v1h-1z`
  }
  return h('svg:svg', { viewBox: `0 0 ${size} ${size}`, class: 'qr-svg', role: 'img', 'aria-label': label, 'shape-rendering': 'crispEdges' },
    h('svg:rect', { width: size, height: size, fill: '#fff' }),
    h('svg:path', { d, fill: '#000' }))
}
