/** The decoder's input for a prompt: token embeddings with the audio encoder's output spliced in. */
import type { TextDecoder } from './text-decoder.ts';

/**
 * Token embeddings of a prompt with the `<|audio_pad|>` rows replaced, in order, by the
 * audio encoder's output (spec §6.1). The number of pads must equal the audio tokens.
 */
export function embedPrompt(decoder: TextDecoder, ids: number[], audioTokenId: number, audio: Float32Array): Float32Array {
  const H = decoder.cfg.hiddenSize;
  const out = new Float32Array(ids.length * H);
  let used = 0;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === audioTokenId) {
      if ((used + 1) * H > audio.length) break;
      out.set(audio.subarray(used * H, (used + 1) * H), i * H);
      used++;
    } else decoder.embed(ids[i], out, i * H);
  }
  const pads = ids.filter((id) => id === audioTokenId).length;
  if (pads * H !== audio.length) throw new Error(`prompt has ${pads} audio positions for ${audio.length / H} audio tokens`);
  return out;
}
