// Transfer speed over a sliding window, and the time left at that speed. Pure: time is passed in.

export class RateMeter {
  constructor (windowMs = 3000) {
    this.windowMs = windowMs
    this.samples = []
  }

  // Record `loaded` bytes done at time `now` (ms).
  add (now, loaded) {
    this.samples.push([now, loaded])
    while (this.samples.length > 2 && now - this.samples[1][0] >= this.windowMs) this.samples.shift()
  }

  // Bytes per second over the window; 0 until two samples are apart in time.
  speed () {
    if (this.samples.length < 2) return 0
    const [t0, b0] = this.samples[0]
    const [t1, b1] = this.samples[this.samples.length - 1]
    return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0
  }

  // Seconds until `total`, or null when the speed is not known yet.
  timeLeft (total) {
    const speed = this.speed()
    if (speed <= 0 || !this.samples.length) return null
    return Math.max(0, total - this.samples[this.samples.length - 1][1]) / speed
  }
}
