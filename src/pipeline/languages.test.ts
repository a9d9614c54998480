import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QWEN_LANGUAGES, resolveLanguage, toIsoCode, toOpenAiLanguageName } from './languages.ts';
import { goldenPath, readJson } from '../testing/shared.ts';

function resolved(hint: string, supported?: readonly string[]): string {
  const r = resolveLanguage(hint, supported);
  if (!r.ok) assert.fail(`${JSON.stringify(hint)} was rejected: ${r.message}`);
  return r.name;
}

function rejected(hint: string, supported?: readonly string[]): string {
  const r = resolveLanguage(hint, supported);
  if (r.ok) assert.fail(`${JSON.stringify(hint)} was accepted as ${JSON.stringify(r.name)}`);
  return r.message;
}

test('QWEN_LANGUAGES is the checkpoint support_languages list, in order', () => {
  const config = readJson<{ support_languages: string[] }>(goldenPath('tiny-a', 'checkpoint', 'config.json'));
  assert.deepEqual([...QWEN_LANGUAGES], config.support_languages);
  assert.equal(QWEN_LANGUAGES.length, 30);
  assert.ok(Object.isFrozen(QWEN_LANGUAGES));
});

test('Qwen names in any case, trimmed', () => {
  for (const name of QWEN_LANGUAGES) {
    assert.equal(resolved(name), name);
    assert.equal(resolved(name.toLowerCase()), name);
    assert.equal(resolved(` ${name.toUpperCase()}\t`), name);
  }
  assert.equal(resolved('cHINese'), 'Chinese');
});

test('empty, blank and "auto" mean detection (name "")', () => {
  for (const hint of ['', '   ', 'auto', 'AUTO', ' Auto ']) assert.equal(resolved(hint), '');
});

test('ISO 639-1 and 639-3 codes, including yue, fil and tl', () => {
  const expected: Record<string, string> = {
    zh: 'Chinese', en: 'English', yue: 'Cantonese', ar: 'Arabic', de: 'German', fr: 'French', es: 'Spanish',
    pt: 'Portuguese', id: 'Indonesian', it: 'Italian', ko: 'Korean', ru: 'Russian', th: 'Thai', vi: 'Vietnamese',
    ja: 'Japanese', tr: 'Turkish', hi: 'Hindi', ms: 'Malay', nl: 'Dutch', sv: 'Swedish', da: 'Danish', fi: 'Finnish',
    pl: 'Polish', cs: 'Czech', fil: 'Filipino', tl: 'Filipino', fa: 'Persian', el: 'Greek', ro: 'Romanian',
    hu: 'Hungarian', mk: 'Macedonian',
    zho: 'Chinese', cmn: 'Chinese', eng: 'English', deu: 'German', ger: 'German', fra: 'French', jpn: 'Japanese',
    kor: 'Korean', tgl: 'Filipino', ell: 'Greek', nld: 'Dutch', ces: 'Czech', fas: 'Persian', mkd: 'Macedonian',
  };
  for (const [code, name] of Object.entries(expected)) {
    assert.equal(resolved(code), name, code);
    assert.equal(resolved(code.toUpperCase()), name, code.toUpperCase());
  }
});

test('BCP-47 tags with - or _', () => {
  const expected: Record<string, string> = {
    'en-US': 'English', 'en_GB': 'English', 'zh-Hans': 'Chinese', 'zh-Hant': 'Chinese', 'zh_TW': 'Chinese',
    'zh-CN': 'Chinese', 'zh-Hant-HK': 'Chinese', 'pt-BR': 'Portuguese', 'es-419': 'Spanish', 'yue-HK': 'Cantonese',
    'zh-yue': 'Cantonese', 'zh-cmn-Hans': 'Chinese', 'fil-PH': 'Filipino', 'sr-Latn': '',
  };
  for (const [tag, name] of Object.entries(expected)) {
    if (name === '') rejected(tag);
    else assert.equal(resolved(tag), name, tag);
  }
});

test('OpenAI verbose names and Whisper aliases', () => {
  for (const name of QWEN_LANGUAGES) assert.equal(resolved(toOpenAiLanguageName(name)), name);
  assert.equal(resolved('tagalog'), 'Filipino');
  assert.equal(resolved('Mandarin'), 'Chinese');
  assert.equal(resolved('farsi'), 'Persian');
});

test('unknown hints are rejected with the supported list; never a silent fallback', () => {
  for (const hint of ['xx', 'klingon', 'jp', 'cn', 'en-', '-en', 'Chinese,English', 'sw', 'constructor', 'toString', '__proto__']) {
    const message = rejected(hint);
    assert.match(message, new RegExp(`^Unsupported language: ${hint.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\. Supported: \\['Chinese', 'English', 'Cantonese'`));
    assert.match(message, /Macedonian'\]/);
    assert.match(message, /zh, en, yue/);
    assert.match(message, /"auto"/);
  }
});

test('a supported list restricts the result (the aligner has 11 languages)', () => {
  const config = readJson<{ support_languages: string[] }>(goldenPath('aligner-a', 'checkpoint', 'config.json'));
  const aligner = config.support_languages;
  assert.equal(aligner.length, 11);
  assert.equal(resolved('de', aligner), 'German');
  assert.equal(resolved('yue', aligner), 'Cantonese');
  assert.equal(resolved('', aligner), '');
  const message = rejected('ar', aligner);
  assert.match(message, /^Unsupported language: ar \(Arabic\)\. Supported: \['Chinese', 'Cantonese', 'English'/);
  assert.doesNotMatch(message, /Arabic'/);
  // A name the table does not know is accepted when the checkpoint lists it.
  assert.equal(resolved('swahili', [...QWEN_LANGUAGES, 'Swahili']), 'Swahili');
});

test('toOpenAiLanguageName: lowercase English name; first of a comma-joined list; "" stays ""', () => {
  assert.equal(toOpenAiLanguageName('English'), 'english');
  assert.equal(toOpenAiLanguageName('Filipino'), 'filipino');
  assert.equal(toOpenAiLanguageName('Chinese,English'), 'chinese');
  assert.equal(toOpenAiLanguageName(''), '');
});

test('toIsoCode: the Qwen README codes', () => {
  assert.equal(toIsoCode('English'), 'en');
  assert.equal(toIsoCode('cantonese'), 'yue');
  assert.equal(toIsoCode('Filipino'), 'fil');
  assert.equal(toIsoCode('Chinese,English'), 'zh');
  assert.equal(toIsoCode(''), undefined);
  assert.equal(toIsoCode('Klingon'), undefined);
  for (const name of QWEN_LANGUAGES) assert.equal(resolved(toIsoCode(name)!), name);
});

test('a non-string hint is a programming error', () => {
  assert.throws(() => resolveLanguage(undefined as unknown as string), /language hint must be a string/);
});
