import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FormFields, openApiFileSchemas } from './upload.ts';

const properties = {
  flag: { type: 'boolean' },
  list: { type: 'array', items: { type: 'string' } },
  name: { type: 'string' },
  strategy: { anyOf: [{ type: 'string' }, { type: 'object' }] },
};

function body(entries: [string, string][]) {
  const fields = new FormFields();
  for (const [name, value] of entries) fields.add(name, value);
  return fields.toBody(properties);
}

test('booleans accept the lax spellings of pydantic, any case', () => {
  for (const v of ['1', 'true', 'T', 'yes', 'Y', 'on', ' TRUE ']) assert.equal(body([['flag', v]]).flag, true, v);
  for (const v of ['0', 'false', 'F', 'no', 'n', 'OFF']) assert.equal(body([['flag', v]]).flag, false, v);
  assert.equal(body([['flag', 'maybe']]).flag, 'maybe', 'left for the schema to refuse');
});

test('arrays: bracket key, bare key, repeated values and comma lists', () => {
  assert.deepEqual(body([['list[]', 'word']]).list, ['word']);
  assert.deepEqual(body([['list[]', 'word'], ['list[]', 'segment']]).list, ['word', 'segment']);
  assert.deepEqual(body([['list', 'word, segment']]).list, ['word', 'segment']);
  assert.deepEqual(body([['list', 'word'], ['list[]', 'segment,']]).list, ['word', 'segment']);
});

test('scalars: empty means absent, repeated values are kept for the schema to refuse', () => {
  assert.deepEqual(body([['name', '']]), {});
  assert.equal(body([['name', 'x']]).name, 'x');
  assert.deepEqual(body([['name', 'x'], ['name', 'y']]).name, ['x', 'y']);
  assert.equal(body([['unknown', 'kept']]).unknown, 'kept');
});

test('bracket paths build objects; a plain value wins', () => {
  assert.deepEqual(body([['strategy[type]', 'server_vad'], ['strategy[silence_duration_ms]', '500']]).strategy, { type: 'server_vad', silence_duration_ms: '500' });
  assert.equal(body([['strategy', 'auto'], ['strategy[type]', 'server_vad']]).strategy, 'auto');
});

test('OpenAPI view of the uploadedFile keyword: a binary string', () => {
  const schema = { body: { type: 'object', properties: { file: { uploadedFile: true, description: 'd' }, n: { type: 'number' } } } };
  assert.deepEqual(openApiFileSchemas(schema), {
    body: { type: 'object', properties: { file: { description: 'd', type: 'string', format: 'binary' }, n: { type: 'number' } } },
  });
  assert.equal(openApiFileSchemas(undefined), undefined);
});
