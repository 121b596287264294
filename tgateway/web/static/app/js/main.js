// Entry point of every page: the account area and sign-in dialog, then the page's own module
// (chosen by <body data-page>, set by tgateway/web/pages.py).
import { setupSignin } from './signin.js'
import { setupAccount } from './account.js'
import { toast } from './toast.js'

const PAGES = {
  upload: () => import('./upload-page.js'),
  file: () => import('./file-page.js'),
  me: () => import('./me-page.js'),
  admin: () => import('./admin-page.js')
}

setupSignin()
setupAccount()
const page = PAGES[document.body.dataset.page]
if (page) {
  page().then((m) => m.start()).catch((e) => toast(e.message, { error: true, ms: 8000 }))
}
document.documentElement.classList.add('js')
