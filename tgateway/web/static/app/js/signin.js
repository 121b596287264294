// The sign-in dialog (its markup is in the layout): NIP-07 extension, a bunker:// URL, or a
// nostrconnect:// code for a phone signer. A successful sign-in stores the session.
import { $, safeHttpUrl, show } from './dom.js'
import { config } from './config.js'
import { session } from './session.js'
import { signInWithExtension } from './nip07.js'
import { signInWithBunker } from './bunker.js'
import { NostrConnect } from './nostrconnect.js'
import { qrCode } from './qr.js'
import { copyButton } from './copy.js'
import { toast } from './toast.js'

let connect = null

export function openSignin () {
  const dialog = $('#signin')
  showError(null)
  if (!dialog.open) dialog.showModal()
}

export function setupSignin () {
  const dialog = $('#signin')
  document.addEventListener('click', (e) => {
    if (e.target.closest('[data-open-signin]')) openSignin()
  })
  dialog.addEventListener('close', () => {
    if (connect) connect.close()
    connect = null
    show($('#connect-box'), false)
    show($('#bunker-approve'), false)
  })
  $('#nip07-button').addEventListener('click', () => run($('#nip07-button'), signInWithExtension))
  $('#bunker-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const button = e.target.querySelector('button')
    run(button, () => signInWithBunker($('#bunker-url').value, { onApprove: approve }))
  })
  const relays = (config.nostr && config.nostr.connect_relays) || []
  show($('#connect-way'), relays.length > 0)
  $('#connect-start').addEventListener('click', () => startConnect(relays))
}

function approve (url) {
  const link = $('#bunker-approve-link')
  const safe = safeHttpUrl(url)
  if (safe) link.href = safe
  else link.removeAttribute('href')
  link.textContent = safe ? 'open the approval page' : String(url)
  show($('#bunker-approve'))
}

async function startConnect (relays) {
  if (connect) connect.close()
  const box = $('#connect-box')
  const state = $('#connect-state')
  showError(null)
  connect = new NostrConnect(relays, { onApprove: approve })
  const mine = connect
  try {
    const uri = await connect.open()
    $('#connect-uri').value = uri
    const qr = $('#connect-qr')
    qr.replaceChildren(await qrCode(uri, 'nostrconnect code for your phone signer'))
    const row = $('#connect-uri').parentElement
    row.querySelector('button')?.remove()
    row.append(copyButton(uri, 'nostrconnect code'))
    state.textContent = 'Waiting for your signer…'
    show(box)
    const answer = await connect.signIn()
    if (mine !== connect) return
    signedIn(answer)
  } catch (e) {
    if (mine === connect && !mine.closed) showError(e.message)
  }
}

async function run (button, fn) {
  showError(null)
  button.disabled = true
  button.setAttribute('aria-busy', 'true')
  try {
    signedIn(await fn())
  } catch (e) {
    showError(e.message)
  } finally {
    button.disabled = false
    button.removeAttribute('aria-busy')
  }
}

function signedIn (answer) {
  session.set({
    token: answer.token,
    pubkey: answer.pubkey,
    npub: answer.npub,
    method: answer.auth_type,
    expires_at: answer.expires_at
  })
  $('#signin').close()
  toast(`Signed in as ${answer.npub.slice(0, 14)}…`)
}

function showError (message) {
  const el = $('#signin-error')
  el.textContent = message || ''
  show(el, Boolean(message))
}
