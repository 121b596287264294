// Repeat an async task every `ms` while the page is visible; stop when it returns false. The
// first run is at once, or after `ms` with `{ wait: true }` (what it shows was just drawn).
export function poll (task, ms, { wait = false } = {}) {
  let timer = null
  let stopped = false
  const run = async () => {
    timer = null
    if (stopped) return
    if (document.hidden) {
      document.addEventListener('visibilitychange', run, { once: true })
      return
    }
    let again = true
    try {
      again = (await task()) !== false
    } catch {}
    if (again && !stopped) timer = setTimeout(run, ms)
  }
  if (wait) timer = setTimeout(run, ms)
  else run()
  return () => {
    stopped = true
    if (timer) clearTimeout(timer)
  }
}
