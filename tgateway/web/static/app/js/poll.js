// Repeat an async task every `ms` while the page is visible; stop when it returns false.
export function poll (task, ms) {
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
  run()
  return () => {
    stopped = true
    if (timer) clearTimeout(timer)
  }
}
