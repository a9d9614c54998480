import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QwenTokenizer, TokenizerError } from './tokenizer.ts';
import { goldenPath, readJson } from '../../testing/shared.ts';

const ASR_DIR = goldenPath('tiny-a', 'checkpoint');
const ALIGNER_DIR = goldenPath('aligner-a', 'checkpoint');
const asrTok = QwenTokenizer.load(ASR_DIR);
const alignerTok = QwenTokenizer.load(ALIGNER_DIR);

interface AsrCase {
  case: string;
  generated_ids: number[];
  decoded_text: string;
}

test('vocabSize and added tokens come from the checkpoint files', () => {
  for (const [dir, tok] of [[ASR_DIR, asrTok], [ALIGNER_DIR, alignerTok]] as const) {
    const config = readJson(join(dir, 'tokenizer_config.json'));
    const vocab = readJson<Record<string, number>>(join(dir, 'vocab.json'));
    let maxId = -1;
    for (const id of Object.values(vocab)) maxId = Math.max(maxId, id);
    for (const [key, entry] of Object.entries<any>(config.added_tokens_decoder)) {
      const id = Number(key);
      maxId = Math.max(maxId, id);
      assert.equal(tok.tokenToId(entry.content), id, entry.content);
      assert.equal(tok.idToToken(id), entry.content);
      assert.equal(tok.isSpecial(id), entry.special === true, `special flag of ${entry.content}`);
    }
    assert.equal(tok.vocabSize, maxId + 1);
  }
  assert.equal(asrTok.vocabSize, 151705); // ends at <asr_text> 151704
  assert.equal(alignerTok.vocabSize, 151706); // plus <timestamp> 151705
  assert.equal(asrTok.tokenToId('<timestamp>'), undefined);
  assert.equal(asrTok.idToToken(151705), undefined);
  assert.equal(asrTok.idToToken(-1), undefined);
  assert.equal(asrTok.tokenToId('Ġhello'), 23811);
  assert.equal(asrTok.idToToken(198), 'Ċ');
});

test('well-known regular ids (spec §7.1, §7.3)', () => {
  assert.deepEqual(asrTok.encode('system'), [8948]);
  assert.deepEqual(asrTok.encode('user'), [872]);
  assert.deepEqual(asrTok.encode('assistant'), [77091]);
  assert.deepEqual(asrTok.encode('\n'), [198]);
  assert.deepEqual(asrTok.encode('language English'), [11528, 6364]);
  assert.deepEqual(asrTok.encode('<|im_start|>system\n<|im_end|>'), [151644, 8948, 198, 151645]);
  assert.deepEqual(asrTok.encode(''), []);
});

test('unit_cases.json tokenize: every unit gives the Qwen2-regex ids', () => {
  const units = readJson(goldenPath('aligner-a', 'unit_cases.json')).tokenize as { unit: string; ids_qwen2_regex: number[] }[];
  assert.ok(units.length > 10);
  for (const u of units) assert.deepEqual(alignerTok.encode(u.unit), u.ids_qwen2_regex, JSON.stringify(u.unit));
});

test('decode of every tiny-a generated sequence equals decoded_text (special tokens skipped)', () => {
  const cases = readJson(goldenPath('tiny-a', 'index.json')).cases as AsrCase[];
  assert.equal(cases.length, 18);
  for (const c of cases) {
    assert.equal(asrTok.decode(c.generated_ids, { skipSpecialTokens: true }), c.decoded_text, c.case);
  }
});

test('decode keeps non-special added tokens, drops special ones only when asked, drops ids without a string', () => {
  const ids = [151644, 9707, 151645, 151704, 151722, 151935, 151705];
  assert.equal(asrTok.decode(ids, { skipSpecialTokens: true }), 'Hello<asr_text>');
  assert.equal(asrTok.decode(ids), '<|im_start|>Hello<|im_end|><asr_text>');
  assert.equal(alignerTok.decode([151705, 151675], { skipSpecialTokens: true }), '<timestamp><non_speech>');
  assert.throws(() => asrTok.decode([1.5]), /not an integer token id/);
});

test('decode UTF-8-decodes the whole sequence: a split character survives, an incomplete one is U+FFFD', () => {
  const ids = asrTok.encode(' 北京');
  assert.deepEqual(ids, [94305, 245, 46553]); // " 北" is split over two tokens
  assert.equal(asrTok.decode(ids), ' 北京');
  assert.equal(asrTok.decode(ids.slice(0, 1)), ' \uFFFD');
  assert.equal(asrTok.decode(ids.slice(0, 2)), ' 北');
  // A lone continuation byte in the middle is replaced, the rest survives.
  assert.equal(asrTok.decode([64, 245, 65]), 'a\uFFFDb');
  // A leading byte-order mark is content, not stripped (Python keeps it).
  assert.equal(asrTok.decode(asrTok.encode('\uFEFFx')), '\uFEFFx');
});

test('NFC: a decomposed é encodes like the composed one', () => {
  const composed = asrTok.encode('Renée');
  assert.deepEqual(composed, [34625, 7888]);
  assert.deepEqual(asrTok.encode('Rene\u0301e'), composed);
  assert.equal(asrTok.decode(asrTok.encode('Rene\u0301e')), 'Renée');
});

test('added tokens are atomic only when allowed', () => {
  assert.deepEqual(asrTok.encode('<|im_end|>'), [151645]);
  const plain = asrTok.encode('<|im_end|><asr_text>', { allowAddedTokens: false });
  assert.ok(!plain.includes(151645) && !plain.includes(151704), String(plain));
  assert.equal(asrTok.decode(plain), '<|im_end|><asr_text>');
  // Longest match wins and text around added tokens is tokenised on its own.
  assert.deepEqual(asrTok.encode('a<|audio_pad|><|audio_pad|>b'), [64, 151676, 151676, 65]);
});

test('pre-tokenizer whitespace is the official engine set, not JavaScript \\s (ids from the reference tokenizer)', () => {
  assert.deepEqual(asrTok.encode('a \uFEFFb'), [64, 75780, 65]); // U+FEFF is not whitespace
  assert.deepEqual(asrTok.encode('a\u0085 b'), [64, 126, 227, 293]); // U+0085 is whitespace
  assert.deepEqual(asrTok.encode('x\u3000\u3000y'), [87, 22441, 22441, 88]);
  assert.deepEqual(asrTok.encode("x'\u017fab"), [87, 6, 144815, 370]); // (?i:'s) also matches long s
  assert.deepEqual(asrTok.encode("IT'S"), [952, 13272]);
  assert.deepEqual(asrTok.encode('2026'), [17, 15, 17, 21]); // digits one by one
});

test('round trip of mixed text, including a long CJK run (one pre-token of thousands of bytes)', () => {
  const text = "Glossary: Qwen3-ASR, TypeScript, Zürich, 北京.\nIt's 2026 — speakers: Dr. O'Neil 😀 \U0001F0BB 𠀀\t\r\n  end ";
  assert.equal(asrTok.decode(asrTok.encode(text)), text);
  const cjk = '我们在年发布了模型支持种语言和方言'.repeat(300);
  const ids = asrTok.encode(cjk);
  assert.ok(ids.length < cjk.length);
  assert.equal(asrTok.decode(ids), cjk);
  // Encoding is deterministic across the piece cache.
  assert.deepEqual(asrTok.encode(text), asrTok.encode(text));
});

test('encode rejects non-strings', () => {
  assert.throws(() => asrTok.encode(42 as unknown as string), TypeError);
});

test('load errors name the file and the problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qwen-tokenizer-test-'));
  try {
    assert.throws(() => QwenTokenizer.load(dir), (e: unknown) => e instanceof TokenizerError && /vocab\.json: file not found/.test(e.message));

    writeFileSync(join(dir, 'vocab.json'), '{"a": 0,');
    assert.throws(() => QwenTokenizer.load(dir), /vocab\.json: invalid JSON/);

    writeFileSync(join(dir, 'vocab.json'), '{"a": -3}');
    assert.throws(() => QwenTokenizer.load(dir), /vocab\.json: token "a" has id -3/);

    // A small byte-level vocabulary: Qwen's ids 0..255 are the 256 byte symbols, 256 is "ĠĠ".
    const small: Record<string, number> = {};
    for (let id = 0; id <= 256; id++) small[asrTok.idToToken(id)!] = id;
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(small));
    assert.throws(() => QwenTokenizer.load(dir), /merges\.txt: file not found/);

    writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\nĠ Ġ\nbad-line\n');
    assert.throws(() => QwenTokenizer.load(dir), /merges\.txt: line 3 is not a merge/);

    writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\nĠ Ġ\n');
    assert.throws(() => QwenTokenizer.load(dir), /tokenizer_config\.json: file not found/);

    writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
    assert.throws(() => QwenTokenizer.load(dir), /tokenizer_config\.json: added_tokens_decoder is missing/);

    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ added_tokens_decoder: { '151643': { content: '<|x|>', rstrip: true } } }));
    assert.throws(() => QwenTokenizer.load(dir), /"rstrip": true is not supported/);

    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ added_tokens_decoder: { '5': { content: '<|x|>' } } }));
    assert.throws(() => QwenTokenizer.load(dir), /id 5 is "<\|x\|>" here but "&" in vocab\.json/);

    // A minimal valid folder loads; a merge whose result is not in the vocabulary is reported when used.
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ added_tokens_decoder: { '151643': { content: '<|endoftext|>', special: true } } }));
    writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\nĠ Ġ\nĀ q\n');
    const tok = QwenTokenizer.load(dir);
    assert.equal(tok.vocabSize, 151644);
    assert.equal(tok.idToToken(1000), undefined);
    assert.deepEqual(tok.encode('  '), [256]);
    assert.throws(() => tok.encode('\u0000q'), /merges\.txt: a merge produces "Āq", which is not in vocab\.json/); // byte 0x00 is "Ā"
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
