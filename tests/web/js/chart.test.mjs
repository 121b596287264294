// node --test: the admin dashboard's chart geometry (tgateway/web/static/app/js/chart-shape.js).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { niceCeil, perInterval, stepShape } from '../../../tgateway/web/static/app/js/chart-shape.js'

test('the top of the y axis is 1, 2 or 5 times a power of ten', () => {
  assert.equal(niceCeil(0), 1)
  assert.equal(niceCeil(1), 1)
  assert.equal(niceCeil(3), 5)
  assert.equal(niceCeil(7), 10)
  assert.equal(niceCeil(12), 20)
  assert.equal(niceCeil(300_000), 500_000)
  assert.equal(niceCeil(0.3), 0.5)
})

test('what a point covers, in words', () => {
  assert.equal(perInterval(60), 'minute')
  assert.equal(perInterval(1), 'second')
  assert.equal(perInterval(30), '30 s')
})

test('each value is a step over the time since the point before', () => {
  // points at 60, 120, 240 (a late one: it covers two intervals), every minute
  const s = stepShape([1, 2, 4], [60, 120, 240], 60, 240, 100)
  assert.equal(s.start, 0)
  assert.equal(s.end, 240)
  assert.equal(s.top, 5)
  assert.equal(s.line, 'M0 80 L60 80 L60 60 L120 60 L120 20 L240 20')
  assert.equal(s.area, 'M0 100 L0 80 L60 80 L60 60 L120 60 L120 20 L240 20 L240 100 Z')
  // nothing counted: a flat line on the axis, top 1
  const flat = stepShape([0], [60], 60, 100, 50)
  assert.equal(flat.top, 1)
  assert.equal(flat.line, 'M0 50 L100 50')
  assert.equal(stepShape([], [], 60, 100, 50), null)
})
