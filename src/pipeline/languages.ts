/**
 * User language hints → the model's canonical language names, and back to the names and codes the
 * HTTP APIs return (api-contract §4, decisions §5.7).
 *
 * Accepted hints (trimmed, case-insensitive):
 *   - a Qwen name ("English", "english", "ENGLISH"), which is also OpenAI's lowercase verbose name;
 *   - an ISO 639-1 code ("en"; "tl" is Tagalog, which the model calls Filipino);
 *   - an ISO 639-3 code, or the ISO 639-2/B form where it differs ("eng", "yue", "fil", "deu",
 *     "ger"), including the individual languages the model's macrolanguages cover in practice
 *     ("cmn" Mandarin, "arb" Standard Arabic, "zsm" Standard Malay, "pes" Iranian Persian);
 *   - a BCP-47 tag, with "-" or "_" ("en-US", "zh-Hans", "zh_TW", "pt-BR"): the primary subtag
 *     decides, except that the extended-language forms "zh-yue" / "zh-cmn" name Cantonese /
 *     Mandarin;
 *   - a few English names Whisper also accepts ("tagalog", "mandarin", "castilian", "flemish",
 *     "moldavian", "moldovan", "farsi").
 * Empty, whitespace-only and "auto" hints mean "detect the language".
 * Anything else is rejected with a message listing what is supported: an unknown hint never falls
 * back silently to detection (decision §5.7.2). Non-standard shorthands like "jp" or "cn" are not
 * ISO codes and are rejected too.
 */

/** The 30 names Qwen3-ASR accepts in the prompt, in the official `support_languages` order (spec §7.5). */
export const QWEN_LANGUAGES: readonly string[] = Object.freeze([
  'Chinese', 'English', 'Cantonese', 'Arabic', 'German', 'French', 'Spanish', 'Portuguese', 'Indonesian', 'Italian',
  'Korean', 'Russian', 'Thai', 'Vietnamese', 'Japanese', 'Turkish', 'Hindi', 'Malay', 'Dutch', 'Swedish',
  'Danish', 'Finnish', 'Polish', 'Czech', 'Filipino', 'Persian', 'Greek', 'Romanian', 'Hungarian', 'Macedonian',
]);

interface LanguageCodes {
  /** The code the Qwen README lists (639-1 where one exists; "yue", "fil" otherwise). */
  primary: string;
  /** Every other code that names this language. */
  aliases: readonly string[];
}

const CODES: ReadonlyMap<string, LanguageCodes> = new Map(Object.entries({
  Chinese: { primary: 'zh', aliases: ['zho', 'chi', 'cmn'] },
  English: { primary: 'en', aliases: ['eng'] },
  Cantonese: { primary: 'yue', aliases: [] },
  Arabic: { primary: 'ar', aliases: ['ara', 'arb'] },
  German: { primary: 'de', aliases: ['deu', 'ger'] },
  French: { primary: 'fr', aliases: ['fra', 'fre'] },
  Spanish: { primary: 'es', aliases: ['spa'] },
  Portuguese: { primary: 'pt', aliases: ['por'] },
  Indonesian: { primary: 'id', aliases: ['ind'] },
  Italian: { primary: 'it', aliases: ['ita'] },
  Korean: { primary: 'ko', aliases: ['kor'] },
  Russian: { primary: 'ru', aliases: ['rus'] },
  Thai: { primary: 'th', aliases: ['tha'] },
  Vietnamese: { primary: 'vi', aliases: ['vie'] },
  Japanese: { primary: 'ja', aliases: ['jpn'] },
  Turkish: { primary: 'tr', aliases: ['tur'] },
  Hindi: { primary: 'hi', aliases: ['hin'] },
  Malay: { primary: 'ms', aliases: ['msa', 'may', 'zsm'] },
  Dutch: { primary: 'nl', aliases: ['nld', 'dut'] },
  Swedish: { primary: 'sv', aliases: ['swe'] },
  Danish: { primary: 'da', aliases: ['dan'] },
  Finnish: { primary: 'fi', aliases: ['fin'] },
  Polish: { primary: 'pl', aliases: ['pol'] },
  Czech: { primary: 'cs', aliases: ['ces', 'cze'] },
  Filipino: { primary: 'fil', aliases: ['tl', 'tgl'] },
  Persian: { primary: 'fa', aliases: ['fas', 'per', 'pes'] },
  Greek: { primary: 'el', aliases: ['ell', 'gre'] },
  Romanian: { primary: 'ro', aliases: ['ron', 'rum'] },
  Hungarian: { primary: 'hu', aliases: ['hun'] },
  Macedonian: { primary: 'mk', aliases: ['mkd', 'mac'] },
} satisfies Record<string, LanguageCodes>));

/** English names Whisper accepts besides the plain language names. */
const NAME_ALIASES: ReadonlyMap<string, string> = new Map(Object.entries({
  tagalog: 'Filipino',
  mandarin: 'Chinese',
  castilian: 'Spanish',
  flemish: 'Dutch',
  moldavian: 'Romanian',
  moldovan: 'Romanian',
  farsi: 'Persian',
}));

/** Lower-case code → canonical name. */
const BY_CODE: ReadonlyMap<string, string> = new Map(
  [...CODES].flatMap(([name, codes]) => [codes.primary, ...codes.aliases].map((code) => [code, name] as [string, string])),
);

/** The official normalisation of a language name: first letter upper case, the rest lower case. */
function capitalise(name: string): string {
  const chars = Array.from(name);
  return chars.length === 0 ? '' : chars[0].toUpperCase() + chars.slice(1).join('').toLowerCase();
}

/** The Qwen name a hint denotes (not yet checked against what a model supports), or undefined. */
function canonicalName(hint: string, supported: readonly string[]): string | undefined {
  const lower = hint.toLowerCase();
  // Names first: the model's own list (a checkpoint may list names this table does not know).
  const named = supported.find((name) => name.toLowerCase() === lower) ?? QWEN_LANGUAGES.find((name) => name.toLowerCase() === lower);
  if (named) return named;
  const alias = NAME_ALIASES.get(lower);
  if (alias !== undefined) return alias;
  const subtags = lower.split(/[-_]/);
  if (subtags.some((s) => s === '')) return undefined;
  // "zh-yue" / "zh-cmn": BCP-47 extended-language subtags name the individual language.
  if (subtags[0] === 'zh' && subtags.length > 1 && BY_CODE.has(subtags[1]) && subtags[1].length === 3) return BY_CODE.get(subtags[1]);
  return BY_CODE.get(subtags[0]);
}

export type LanguageResolution = { ok: true; name: string } | { ok: false; message: string };

/**
 * Maps a user's language hint to a canonical name from `supported` (default: the 30 ASR names;
 * pass a checkpoint's `support_languages`, e.g. the aligner's 11).
 * `{ ok: true, name: '' }` means "detect the language" (empty, whitespace-only or "auto" hint):
 * the same "" the pipeline uses for "no language".
 */
export function resolveLanguage(hint: string, supported: readonly string[] = QWEN_LANGUAGES): LanguageResolution {
  if (typeof hint !== 'string') throw new TypeError(`language hint must be a string, got ${hint === null ? 'null' : typeof hint}`);
  const trimmed = hint.trim();
  if (trimmed === '' || trimmed.toLowerCase() === 'auto') return { ok: true, name: '' };
  const name = canonicalName(trimmed, supported);
  if (name !== undefined && supported.includes(name)) return { ok: true, name };
  return { ok: false, message: unsupportedMessage(trimmed, name, supported) };
}

/** The seed's wording ("Unsupported language: X. Supported: [...]") plus the codes we accept. */
function unsupportedMessage(hint: string, recognised: string | undefined, supported: readonly string[]): string {
  const names = `[${supported.map((n) => `'${n}'`).join(', ')}]`;
  const codes = supported.map((n) => CODES.get(n)?.primary).filter((c): c is string => c !== undefined);
  const what = recognised !== undefined && recognised !== hint ? `${hint} (${recognised})` : hint;
  return (
    `Unsupported language: ${what}. Supported: ${names}` +
    (codes.length > 0 ? `, or their ISO 639 codes (${codes.join(', ')}) and BCP-47 tags such as en-US` : '') +
    `; leave it empty or use "auto" to detect the language.`
  );
}

/** The first name of a comma-joined language list ("Chinese,English" → "Chinese"). */
function firstName(qwenName: string): string {
  return qwenName.split(',')[0].trim();
}

/**
 * The lowercase English name OpenAI's verbose_json returns ("English" → "english"; "" → "").
 * For a comma-joined list of detected languages ("Chinese,English") this is the first one, as
 * OpenAI reports a single language (api-contract §4.3). Names outside the table are lowercased.
 */
export function toOpenAiLanguageName(qwenName: string): string {
  return firstName(qwenName).toLowerCase();
}

/**
 * The ISO code of a Qwen name as the Qwen README lists it ("English" → "en", "Cantonese" → "yue",
 * "Filipino" → "fil"); case-insensitive; the first of a comma-joined list; undefined for "" and
 * for names outside the table.
 */
export function toIsoCode(qwenName: string): string | undefined {
  const name = capitalise(firstName(qwenName));
  return CODES.get(name)?.primary;
}
