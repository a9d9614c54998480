/** Types the engine shares with its callers: where it runs, its weight precision, and what the aligner returns. */

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/** Weight precision on the CPU: fp32, W8A8 int8, or int4 step graph beside W8A8 (thinker/precision.ts). */
export type Quantization = 'none' | 'int8' | 'int4';

/** One aligned unit: a word, or one CJK character, punctuation removed; seconds from the start of the audio. */
export interface WordTimestamp {
  text: string;
  start: number;
  end: number;
}
