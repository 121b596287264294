// The admin pages (/admin, /admin/<view>): the view named by #admin[data-view] fills the page
// from the admin API with the signed-in key's session. Signed out: a sign-in prompt. A key that
// is not an admin's: the API's own answer (403 "administrators only"), nothing else.
import { $, h, show } from './dom.js'
import { session } from './session.js'
import { toast } from './toast.js'

const VIEWS = {
  dashboard: () => import('./admin-dashboard.js'),
  users: () => import('./admin-users.js'),
  files: () => import('./admin-files.js'),
  reports: () => import('./admin-reports.js'),
  blocked: () => import('./admin-blocked.js'),
  transcode: () => import('./admin-transcode.js'),
  retention: () => import('./admin-retention.js'),
  audit: () => import('./admin-audit.js')
}

let generation = 0
let shownFor

export function start () {
  session.onChange(() => load())
  load()
}

async function load () {
  const token = session.token()
  if (token === shownFor) return // the same session, updated (its admin flag): nothing to redo
  shownFor = token
  const mine = ++generation
  const root = $('#admin')
  root.replaceChildren()
  show($('#admin-refused'), false)
  show($('#admin-signed-out'), !token)
  if (!token) return
  const view = await VIEWS[root.dataset.view]()
  if (mine !== generation) return
  root.setAttribute('aria-busy', 'true')
  try {
    await view.render(root)
  } catch (e) {
    if (mine !== generation) return
    root.replaceChildren()
    if (e.status === 401 || e.status === 403) {
      $('#admin-refused-message').textContent = e.message
      show($('#admin-refused'))
    } else {
      root.append(h('p', { class: 'error', role: 'alert' }, e.message))
      toast(e.message, { error: true })
    }
  } finally {
    root.removeAttribute('aria-busy')
  }
}
