// Upload a file the way the web page (and every browser) does: fetch() with a FormData body
// (Node's built-in undici builds the multipart body, boundary and part headers itself).
// Usage: form_upload.mjs URL PATH FILENAME TITLE; prints the gateway's JSON answer.
import { readFileSync } from 'node:fs'

const [url, path, filename, title] = process.argv.slice(2)
const form = new FormData()
form.append('title', title)
form.append('announce_dht', 'false')
form.append('file', new Blob([readFileSync(path)], { type: 'application/x-test' }), filename)
const res = await fetch(url, { method: 'POST', body: form })
const body = await res.json()
console.log(JSON.stringify({ status: res.status, body }))
