// node --test: the web interface's modules that need no DOM (formatting, the rate meter).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatBytes, formatDuration, formatPercent, formatSpeed, shortKey } from '../../../tgateway/web/static/app/js/format.js'
import { RateMeter } from '../../../tgateway/web/static/app/js/meter.js'

test('sizes in SI units, like tgateway.web.pages.format_size', () => {
  assert.equal(formatBytes(0), '0 B')
  assert.equal(formatBytes(999), '999 B')
  assert.equal(formatBytes(1000), '1.0 kB')
  assert.equal(formatBytes(300000), '300 kB')
  assert.equal(formatBytes(12_345_678), '12.3 MB')
  assert.equal(formatBytes(10e9), '10.0 GB')
  assert.equal(formatBytes(-1), '–')
  assert.equal(formatSpeed(2_500_000), '2.5 MB/s')
  assert.equal(formatSpeed(0), '–')
})

test('durations and percentages', () => {
  assert.equal(formatDuration(4.4), '4 s')
  assert.equal(formatDuration(65), '1 min 05 s')
  assert.equal(formatDuration(7260), '2 h 01 min')
  assert.equal(formatDuration(null), null)
  assert.equal(formatDuration(Infinity), null)
  assert.equal(formatPercent(0.999), '99 %')
  assert.equal(formatPercent(1), '100 %')
  assert.equal(formatPercent(1.5), '100 %')
  assert.equal(shortKey('npub1' + 'q'.repeat(58), 9, 4), 'npub1qqqq…qqqq')
})

test('the rate meter measures over its window and predicts the time left', () => {
  const m = new RateMeter(3000)
  assert.equal(m.speed(), 0)
  assert.equal(m.timeLeft(100), null)
  m.add(0, 0)
  m.add(1000, 1_000_000)
  assert.equal(m.speed(), 1_000_000)
  assert.equal(m.timeLeft(5_000_000), 4)
  // old samples leave the window: the speed follows the recent rate
  for (let t = 2000; t <= 10000; t += 1000) m.add(t, 1_000_000 + (t - 1000) * 3000)
  assert.equal(Math.round(m.speed()), 3_000_000)
  assert.ok(m.samples.length <= 5)
  assert.equal(m.timeLeft(0), 0)
})
