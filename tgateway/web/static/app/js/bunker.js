// NIP-46 with a bunker:// URL: the gateway talks to the signer over the URL's relays
// (POST /api/auth/login); when the signer wants the user to approve first, the gateway answers
// its auth_url and the page polls with the login_id until the signer answers.
import { api } from './api.js'

export async function signInWithBunker (url, { onApprove = () => {} } = {}) {
  const value = url.trim()
  if (!/^bunker:\/\//i.test(value)) throw new Error('A remote signer URL starts with bunker://')
  let answer = await api('/api/auth/login', {
    method: 'POST', json: { auth_type: 'nip46', bunker_url: value }, auth: false
  })
  while (answer.status === 'auth_url') {
    onApprove(answer.auth_url)
    answer = await api('/api/auth/login', {
      method: 'POST', json: { auth_type: 'nip46', login_id: answer.login_id }, auth: false
    })
  }
  return answer
}
