// The gateway's public configuration, embedded in every page by tgateway/web/pages.py (the same
// JSON as GET /api/config): public URLs, upload limits, running components, vendored libraries.
const block = document.getElementById('tg-config')

export const config = Object.freeze(block ? JSON.parse(block.textContent) : {})
