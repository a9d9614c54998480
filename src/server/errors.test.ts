import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AudioDecodeError } from '../audio/errors.ts';
import { PipelineError } from '../pipeline/types.ts';
import { describeValidation, detailErrorBody, fastApiIssue, fromPipelineError, HttpError, openAiErrorBody, toHttpError } from './errors.ts';
import { audioTooLongError } from '../audio/errors.ts';

test('pipeline errors map to the documented statuses', () => {
  const status = (code: ConstructorParameters<typeof PipelineError>[0]) => fromPipelineError(new PipelineError(code, 'm'))!.statusCode;
  assert.equal(status('audio_empty'), 400);
  assert.equal(status('audio_too_short'), 400);
  assert.equal(status('audio_undecodable'), 400);
  assert.equal(status('aligner_unavailable'), 400);
  assert.equal(status('aligner_language_unsupported'), 400);
  assert.equal(status('queue_full'), 503);
  assert.equal(status('model_not_ready'), 503);
  assert.equal(status('aborted'), 499);
  assert.equal(status('internal'), 500);

  const full = fromPipelineError(new PipelineError('queue_full', 'busy'))!;
  assert.equal(full.headers['retry-after'], '5');
  assert.deepEqual(openAiErrorBody(full), { error: { message: 'busy', type: 'server_error', param: null, code: 'overloaded' } });
  assert.equal(fromPipelineError(new Error('boom')), undefined, 'anything else is a server fault');
});

test('decode errors are 400, also when re-created from a worker message', () => {
  const direct = fromPipelineError(new AudioDecodeError('undecodable', 'a.mp3', 'not audio'))!;
  assert.equal(direct.statusCode, 400);
  assert.equal(direct.param, 'file');
  assert.match(direct.message, /^The audio file could not be decoded or its format is not supported\. a\.mp3: not audio$/);

  const crossed = Object.assign(new Error('x.wav: file is empty (0 bytes)'), { name: 'AudioDecodeError', code: 'empty' });
  const empty = fromPipelineError(crossed)!;
  assert.equal(empty.statusCode, 400);
  assert.equal(empty.code, 'empty_file');
});

test('other errors: client statuses kept, the rest 500', () => {
  assert.equal(toHttpError(Object.assign(new Error('too many'), { code: 'FST_FIELDS_LIMIT', statusCode: 413 })).statusCode, 413);
  assert.equal(toHttpError(Object.assign(new Error('bad json'), { statusCode: 400 })).statusCode, 400);
  const fault = toHttpError(new TypeError('x is undefined'));
  assert.equal(fault.statusCode, 500);
  assert.equal(fault.type, 'server_error');
  const own = new HttpError(418, 'teapot');
  assert.equal(toHttpError(own), own);
  assert.deepEqual(detailErrorBody(own), { detail: 'teapot' });
});

test('validation errors become sentences naming the field', () => {
  const body = { stream: 'maybe', response_format: 'xml', temperature: 3, timestamp_granularities: ['word', 'line'] };
  const issue = (e: object) => describeValidation({ validation: [e as any] }, body);

  const missing = issue({ instancePath: '', keyword: 'required', params: { missingProperty: 'file' } });
  assert.deepEqual(missing, { field: 'file', kind: 'missing', input: undefined, message: "Missing required parameter: 'file'." });
  assert.deepEqual(fastApiIssue(missing), { type: 'missing', loc: ['body', 'file'], msg: 'Field required', input: null });

  const bool = issue({ instancePath: '/stream', keyword: 'type', params: { type: 'boolean' } });
  assert.equal(bool.message, "Invalid value for 'stream': expected a boolean (true/false), got 'maybe'.");
  assert.equal(fastApiIssue(bool, 'boolean').type, 'bool_parsing');

  const format = issue({ instancePath: '/response_format', keyword: 'enum', params: { allowedValues: ['json', 'text'] } });
  assert.equal(format.message, "Unsupported value for 'response_format': 'xml'. Supported values: json, text.");

  const item = issue({ instancePath: '/timestamp_granularities/1', keyword: 'enum', params: { allowedValues: ['word', 'segment'] } });
  assert.equal(item.field, 'timestamp_granularities');
  assert.match(item.message, /'timestamp_granularities' item 1: 'line'/);

  const range = issue({ instancePath: '/temperature', keyword: 'maximum', params: { limit: 1 }, message: 'must be <= 1' });
  assert.equal(range.message, "Invalid value for 'temperature': 3 must be <= 1.");
});

test('limits, timeouts and shutdown map to 413, 408, 503 + Retry-After and 400, in both envelopes', () => {
  const map = (code: ConstructorParameters<typeof PipelineError>[0], message = 'm') => fromPipelineError(new PipelineError(code, message))!;

  const long = map('audio_too_long', "'talk.flac': the audio is longer than the limit of 14400 s (4 h) set by MAX_AUDIO_SECONDS");
  assert.equal(long.statusCode, 413);
  assert.deepEqual(openAiErrorBody(long), {
    error: { message: "'talk.flac': the audio is longer than the limit of 14400 s (4 h) set by MAX_AUDIO_SECONDS", type: 'invalid_request_error', param: 'file', code: 'audio_too_long' },
  });
  assert.deepEqual(detailErrorBody(long), { detail: "'talk.flac': the audio is longer than the limit of 14400 s (4 h) set by MAX_AUDIO_SECONDS" });
  assert.match(map('audio_too_long', '').message, /longer than this server accepts \(MAX_AUDIO_SECONDS\)/);

  const slow = map('decode_timeout', '');
  assert.equal(slow.statusCode, 408);
  assert.equal(slow.code, 'decode_timeout');
  assert.equal(slow.headers['x-should-retry'], 'false', 'the SDKs would retry a 408 otherwise');
  assert.match(detailErrorBody(slow).detail as string, /DECODE_TIMEOUT_SECONDS/);

  for (const code of ['job_timeout', 'shutting_down'] as const) {
    const busy = map(code);
    assert.equal(busy.statusCode, 503, code);
    assert.equal(busy.headers['retry-after'], '5', code);
    assert.equal(busy.code, code);
    assert.equal(openAiErrorBody(busy).error.type, 'server_error');
    assert.deepEqual(detailErrorBody(busy), { detail: 'm' });
  }
  assert.match(map('shutting_down', '').message, /shutting down/);

  const bad = map('bad_request', 'language must be a string');
  assert.equal(bad.statusCode, 400);
  assert.deepEqual(openAiErrorBody(bad).error, { message: 'language must be a string', type: 'invalid_request_error', param: null, code: 'invalid_value' });
});

test('a too-long decode is 413, also when re-created from a worker message', () => {
  const direct = fromPipelineError(audioTooLongError('a.flac', 600))!;
  assert.equal(direct.statusCode, 413);
  assert.equal(direct.code, 'audio_too_long');
  assert.match(direct.message, /a\.flac: the audio is longer than the limit of 600 s \(10 min\) set by MAX_AUDIO_SECONDS/);
  const crossed = Object.assign(new Error('x.wav: the audio lasts 9.0 s, longer than the limit of 5 s'), { name: 'AudioDecodeError', code: 'too_long' });
  assert.equal(fromPipelineError(crossed)!.statusCode, 413);
});
