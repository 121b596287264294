// Calls to the gateway's JSON API. Errors carry the API's own `message` (never a stack trace);
// a session the gateway no longer knows is dropped.
import { session } from './session.js'

export class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

export function errorFromResponse (status, text) {
  try {
    const body = JSON.parse(text)
    if (body && typeof body.message === 'string') return new ApiError(status, body.error || 'error', body.message)
  } catch {}
  if (status === 0) return new ApiError(0, 'network', 'The gateway cannot be reached.')
  return new ApiError(status, 'http_' + status, `The gateway answered ${status}.`)
}

export async function api (path, { method = 'GET', json, auth = true, signal } = {}) {
  const headers = { Accept: 'application/json' }
  const token = auth ? session.token() : null
  if (token) headers.Authorization = 'Bearer ' + token
  let body
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(json)
  }
  let response
  try {
    response = await fetch(path, { method, headers, body, signal, cache: 'no-store' })
  } catch (e) {
    if (e.name === 'AbortError') throw e
    throw new ApiError(0, 'network', 'The gateway cannot be reached.')
  }
  const text = await response.text()
  if (!response.ok) {
    const error = errorFromResponse(response.status, text)
    if (token && error.status === 401 && error.code === 'invalid_session') session.clear()
    throw error
  }
  return text ? JSON.parse(text) : null
}
