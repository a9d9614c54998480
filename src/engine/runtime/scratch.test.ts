import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Scratch } from './scratch.ts';

test('scratch: a slot hands out the same memory while it fits, grows when asked for more, slots are apart', () => {
  const s = new Scratch();
  const a = s.bytes('weight', 100);
  a.fill(7);
  const b = s.bytes('weight', 60);
  assert.equal(b.buffer, a.buffer, 'a smaller request reuses the buffer');
  assert.equal(b.length, 60);
  assert.equal(b[59], 7, 'contents are whatever was there');
  const other = s.bytes('quantized', 100);
  assert.notEqual(other.buffer, a.buffer, 'another slot has its own buffer');
  const grown = s.bytes('weight', 200);
  assert.notEqual(grown.buffer, a.buffer);
  assert.equal(grown.length, 200);
  assert.equal(s.slot('weight')(150).buffer, grown.buffer, 'slot() allocates from the same buffer');
  s.release();
  assert.notEqual(s.bytes('weight', 10).buffer, grown.buffer, 'after release a slot starts afresh');
});
