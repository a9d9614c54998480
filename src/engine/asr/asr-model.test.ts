/**
 * Conformance of the whole engine against the golden sets (golden/README.md): every case of
 * each set's index.json through features -> encoder -> prompt -> decoder -> decode -> parse,
 * with the README's tolerances, fp32 weights. tiny-a always; any other set found beside it or
 * in QWEN3_ASR_GOLDEN_EXTRA (src/testing/shared.ts `goldenSets`) too, e.g. goldens generated from
 * the reference script's held-out tiny-b config.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { logMelSpectrogram } from '../../audio/features.ts';
import { AsrModel } from './asr-model.ts';
import { planEncoder } from '../thinker/audio-encoder.ts';
import { SafetensorsStore } from '../checkpoint/safetensors.ts';
import { argmax } from '../thinker/generate.ts';
import { stepGraphRowsFor } from '../thinker/precision.ts';
import { goldenSets, maxAbsDiff, relError, type GoldenSet } from '../../testing/shared.ts';

const sets = goldenSets('asr', ['tiny-a']);

/** golden/README.md: first_logits within 1e-3 of the reference (max abs). */
const LOGIT_TOLERANCE = 1e-3;

/**
 * How many of a case's generated ids are decided beyond doubt: all of them while every step's
 * reference top-1 margin exceeds twice the logit tolerance (tiny-a's smallest is 0.0148, so
 * tiny-a is held to every id); from the first step decided by less, two float32 routes that
 * both meet the tolerance may pick differently (full-size random weights give margins of 1e-4).
 */
function decidedSteps(c: any): number {
  const i = (c.step_top1_margins as number[]).findIndex((m) => m < 2 * LOGIT_TOLERANCE);
  return i < 0 ? c.generated_ids.length : i;
}

/**
 * The generated ids agree wherever they are decided; true when all of them equal the
 * reference's (decided throughout, or identical past the decided ones too).
 */
function assertDecidedIds(got: number[], c: any): boolean {
  const n = decidedSteps(c);
  assert.deepEqual(got.slice(0, n), c.generated_ids.slice(0, n), `${c.case}: the first ${n} ids`);
  if (n === c.generated_ids.length) {
    assert.equal(got.length, n, `${c.case}: as many ids as the reference`);
    return true;
  }
  const k = c.generated_ids.findIndex((id: number, i: number) => got[i] !== id);
  const identical = k < 0 && got.length === c.generated_ids.length;
  const tail = identical ? 'the rest identical too' : `first difference at id ${k < 0 ? got.length : k}`;
  process.stdout.write(`# ${c.case}: ${n} of ${c.generated_ids.length} ids decided by margins of at least ${2 * LOGIT_TOLERANCE}; ${tail}\n`);
  return identical;
}

function topK(logits: Float32Array, k: number): number[] {
  return Array.from(logits.keys())
    .sort((a, b) => logits[b] - logits[a] || a - b)
    .slice(0, k);
}

for (const set of sets) conformance(set);

function conformance(set: GoldenSet): void {
  const cases: any[] = set.index.cases;
  const audioIds = [...new Set(cases.map((c) => c.audio_id as string))];
  /** Every case as a request: its golden audio, language, context and the set's token budget. */
  const goldenRequests = () =>
    cases.map((c) => ({
      samples: SafetensorsStore.openFile(set.path(c.audio_file_golden)).readFloat32('waveform'),
      language: c.language ?? undefined,
      context: c.context || undefined,
      maxNewTokens: set.index.model.max_new_tokens,
    }));

  describe(`${set.name} conformance (fp32)`, () => {
    let model: AsrModel;
    before(async () => {
      model = await AsrModel.load(set.path('checkpoint'), { device: 'cpu', quant: 'none', threads: 2 });
    });
    after(async () => model?.release());

    for (const audioId of audioIds) {
      test(`${audioId}: features, encoder layout and audio embeddings`, async () => {
        const golden = SafetensorsStore.openFile(set.path('cases', `${audioId}.audio.safetensors`));
        const c = cases.find((x) => x.audio_id === audioId);
        const waveform = golden.readFloat32('waveform');
        const feats = logMelSpectrogram(waveform, model.features);
        assert.equal(feats.frames, c.feature_length);
        const goldFeats = golden.readFloat32('input_features');
        assert.ok(maxAbsDiff(feats.data, goldFeats) <= 2e-4, `input_features max diff ${maxAbsDiff(feats.data, goldFeats)}`);

        const plan = planEncoder(feats.frames, model.config.audio);
        assert.equal(plan.audioTokens, c.num_audio_tokens);
        assert.deepEqual(plan.chunkLengths, c.encoder_chunk_lengths);
        assert.deepEqual(plan.windowBounds, c.encoder_cu_seqlens);

        // Encoder from the golden features, so its tolerance is judged on its own.
        const [embeds] = await model.encoder.encode([{ data: goldFeats, frames: feats.frames }]);
        const diff = maxAbsDiff(embeds, golden.readFloat32('audio_embeds'));
        assert.ok(diff <= 1e-4, `audio_embeds max diff ${diff}`);
      });
    }

    for (const c of cases) {
      test(`${c.case}: prompt, first logits, generated ids, text, language`, async () => {
        const audio = SafetensorsStore.openFile(set.path(c.audio_file_golden));
        const golden = SafetensorsStore.openFile(set.path(c.case_file_golden));
        const [r] = await model.transcribe(
          [{ samples: audio.readFloat32('waveform'), language: c.language ?? undefined, context: c.context || undefined, maxNewTokens: set.index.model.max_new_tokens }],
          // The official decoding: the repetition guard (tested below) stops loops the reference runs out.
          { keepFirstLogits: true, repetitionThreshold: 0 },
        );
        assert.equal(r.audioTokens, c.num_audio_tokens);
        assert.deepEqual(r.promptIds, c.prompt_ids);
        const goldLogits = golden.readFloat32('first_logits');
        const diff = maxAbsDiff(r.firstLogits!, goldLogits);
        assert.ok(diff <= LOGIT_TOLERANCE, `first_logits max diff ${diff}`);
        // The top five in order wherever the reference separates them by more than the tolerance allows to swap.
        const top5: [number, number][] = c.first_logits_top5;
        const ours = topK(r.firstLogits!, 5);
        top5.forEach(([id, value], k) => {
          const apart = (j: number) => j < 0 || j >= top5.length || Math.abs(top5[j][1] - value) > 2 * LOGIT_TOLERANCE;
          if (apart(k - 1) && apart(k + 1)) assert.equal(ours[k], id, `top-5 rank ${k}`);
        });
        if (!assertDecidedIds(r.tokenIds, c)) return; // later, undecided ids legitimately differ: so may the text
        assert.equal(r.truncated, c.stop_reason === 'max_new_tokens');
        assert.equal(r.raw, c.decoded_text);
        assert.equal(r.language, c.parsed_language);
        assert.equal(r.text, c.parsed_text);
        // The text's ids (verbose_json's `tokens`) decode to what follows `<asr_text>`, with no stop id.
        const tag = r.raw.lastIndexOf('<asr_text>');
        assert.equal(model.tokenizer.decode(r.textTokenIds, { skipSpecialTokens: false }), tag < 0 ? r.raw : r.raw.slice(tag + '<asr_text>'.length));
        assert.deepEqual(r.tokenIds.slice(r.tokenIds.length - r.textTokenIds.length - (r.truncated ? 0 : 1), r.truncated ? undefined : -1), r.textTokenIds);
      });
    }

    test('all cases decoded together as one batch give the same ids', async () => {
      const results = await model.transcribe(goldenRequests(), { prefillChunk: 128, repetitionThreshold: 0 });
      results.forEach((r, i) => assertDecidedIds(r.tokenIds, cases[i]));
    });

    test('with the repetition guard every golden text and language stay the same, and loops stop early', async () => {
      const guarded = await model.transcribe(goldenRequests());
      guarded.forEach((r, i) => {
        const c = cases[i];
        if (decidedSteps(c) < c.generated_ids.length) return; // undecided ids may differ, and so the text
        assert.equal(r.text, c.parsed_text, `${c.case}: text`);
        assert.equal(r.language, c.parsed_language, `${c.case}: language`);
        if (r.repetitionStopped) {
          assert.ok(r.decodedTokens < c.generated_ids.length, `${c.case}: stopped early`);
          // A loop run out to the budget gives the reference's ids; one the reference ended with a stop id, its text.
          if (c.stop_reason === 'max_new_tokens') assert.deepEqual(r.tokenIds, c.generated_ids, `${c.case}: ids`);
        } else {
          assert.deepEqual(r.tokenIds, c.generated_ids, `${c.case}: ids`);
        }
      });
      assert.ok(guarded.some((r) => r.repetitionStopped), 'some golden case loops');
    });
  });
}

const tinyA = sets.find((s) => s.name === 'tiny-a')!;

/** tiny-a's cases `picks` as requests (their golden audio, language and context), `budgets[i]` new tokens each. */
function tinyARequests(picks: readonly number[], budgets: readonly number[]) {
  const picked = picks.map((i) => tinyA.index.cases[i]);
  const reqs = picked.map((c, i) => ({
    samples: SafetensorsStore.openFile(tinyA.path(c.audio_file_golden)).readFloat32('waveform'),
    language: c.language ?? undefined,
    context: c.context || undefined,
    maxNewTokens: budgets[i],
  }));
  return { picked, reqs };
}

// int8 runs every pass on its one (W8A8) graph; int4 steps batches of up to `stepGraphRows`
// sequences through its one-position step graph (MatMulNBits), larger ones through the batch
// graph — so int4 is checked with three sequences and stepGraphRows 3, which stay on the
// step graph as the shorter ones leave.
for (const [quant, picks, budgets] of [
  ['int8', [0, 5, 11], [2, 5, 7]],
  ['int4', [0, 5, 11], [2, 5, 7]],
] as const) {
  test(`${quant}: ${picks.length} cases decoded together match each decoded alone`, async () => {
    // Left padding, masks, positions, the new keys and values (host-quantised on the step
    // graph) and rows leaving must not change any row's numbers. Prompts of different lengths.
    const model = await AsrModel.load(tinyA.path('checkpoint'), { device: 'cpu', quant, threads: 2, cacheDir: false, precisions: { stepGraphRows: 3 } });
    try {
      const { picked, reqs } = tinyARequests(picks, budgets);
      assert.ok(new Set(picked.map((c) => c.audio_id)).size > 1, 'prompts of different lengths');
      const opts = { keepStepLogits: true, ignoreStopTokens: true };
      const together = await model.transcribe(reqs, opts);
      for (let i = 0; i < reqs.length; i++) {
        const [alone] = await model.transcribe([reqs[i]], opts);
        assert.deepEqual(together[i].tokenIds, alone.tokenIds, picked[i].case);
        alone.stepLogits!.forEach((want, s) => {
          // Each token is the graph's argmax (next_ids) of the logits it came with.
          assert.equal(alone.tokenIds[s], argmax(want, 0, want.length), `${picked[i].case} step ${s}: next id`);
          const got = together[i].stepLogits![s];
          const err = relError(got, want);
          assert.ok(err < 1e-4, `${picked[i].case} step ${s}: relative difference ${err}`);
        });
      }
    } finally {
      await model.release();
    }
  });
}

test('int4: steps of more sequences than stepGraphRows run on the batch graph (W8A8, as int8)', async () => {
  // Three sequences with budgets 2, 5, 7: step 1 runs all three; later steps two or one. With
  // stepGraphRows 2 that step must come from the W8A8 batch graph — the very numbers of int8's
  // one graph — and with 3 from the 4-bit step graph, whose logits differ from W8A8's by ~0.2.
  const { picked, reqs } = tinyARequests([0, 5, 11], [2, 5, 7]);
  const run = async (quant: 'int8' | 'int4', stepGraphRows: number) => {
    const model = await AsrModel.load(tinyA.path('checkpoint'), { device: 'cpu', quant, threads: 2, cacheDir: false, precisions: { stepGraphRows } });
    try {
      assert.equal(model.decoder.stepGraphRows, stepGraphRows);
      return await model.transcribe(reqs, { keepStepLogits: true, ignoreStopTokens: true });
    } finally {
      await model.release();
    }
  };
  const int8 = await run('int8', 2);
  const batchRouted = await run('int4', 2);
  const stepRouted = await run('int4', 3);
  let compared = 0;
  for (let i = 0; i < reqs.length; i++) {
    assert.deepEqual(int8[i].tokenIds.slice(0, 2), batchRouted[i].tokenIds.slice(0, 2), `${picked[i].case}: the prompt pass and the three-row step as int8`);
    if (int8[i].tokenIds[0] !== stepRouted[i].tokenIds[0]) continue; // step 1 then follows other tokens
    const err = relError(batchRouted[i].stepLogits![1], int8[i].stepLogits![1]);
    assert.ok(err < 1e-4, `${picked[i].case}: three-row step with stepGraphRows 2 against int8's graph: ${err}`);
    const other = relError(stepRouted[i].stepLogits![1], int8[i].stepLogits![1]);
    assert.ok(other > 1e-2, `${picked[i].case}: with stepGraphRows 3 the three-row step comes from the 4-bit step graph: ${other}`);
    compared++;
  }
  assert.ok(compared >= 2, `only ${compared} of 3 cases comparable`);
});

test('step graph rows: 2 with AMX; otherwise 3 on one thread, 6 on more (precision.ts stepGraphRowsFor)', () => {
  assert.equal(stepGraphRowsFor(new Set(['avx2', 'avx512_vnni']), 1), 3);
  assert.equal(stepGraphRowsFor(new Set(['avx2', 'avx512_vnni']), 2), 6);
  assert.equal(stepGraphRowsFor(new Set(['avx512_vnni', 'amx_tile', 'amx_int8']), 1), 2);
  assert.equal(stepGraphRowsFor(new Set(['avx512_vnni', 'amx_tile', 'amx_int8']), 4), 2);
  assert.equal(stepGraphRowsFor(new Set(), 1), 3, 'unknown flags');
});
