/**
 * Conformance of the forced aligner against every aligner-a golden case (golden/README.md,
 * aligner half): word units, prompt ids, audio embeddings, raw classes at the <timestamp>
 * slots, repaired milliseconds and final items; and the combined transcribe-with-timestamps
 * path (tiny-a ASR + aligner-a) against the golden `transcription`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ForcedAligner } from './aligner-model.ts';
import { AsrModel } from '../model/asr-model.ts';
import { buildAlignerPrompt } from '../model/prompt.ts';
import { SafetensorsStore } from '../model/safetensors.ts';
import { runTranscription } from '../pipeline/run-transcription.ts';
import { goldenPath, maxAbsDiff, readJson } from '../testing/shared.ts';
import { logMelSpectrogram } from '../audio/features.ts';

const index = readJson(goldenPath('aligner-a', 'index.json'));
const cases: any[] = index.cases;

function waveformOf(c: any): Float32Array {
  const file = c.waveform_and_features_file ?? c.case_file_golden;
  return SafetensorsStore.openFile(goldenPath('aligner-a', file)).readFloat32('waveform');
}

const goldenItems = (c: any) => c.items.map((i: any) => ({ text: i.text, start: i.start_time, end: i.end_time }));

describe('aligner-a conformance (fp32)', () => {
  let aligner: ForcedAligner;
  before(async () => {
    aligner = await ForcedAligner.load(goldenPath('aligner-a', 'checkpoint'), { device: 'cpu', quant: 'none', threads: 2 });
  });
  after(async () => aligner?.release());

  for (const c of cases) {
    test(`${c.case}: units, ids, audio embeddings, classes, repaired ms, items`, async () => {
      const samples = waveformOf(c);
      const golden = SafetensorsStore.openFile(goldenPath('aligner-a', c.case_file_golden));
      const feats = logMelSpectrogram(samples, aligner.features);
      assert.equal(feats.frames, c.feature_length);
      const [embeds] = await aligner.encoder.encode([feats]);
      assert.ok(maxAbsDiff(embeds, golden.readFloat32('audio_embeds')) <= 1e-4, `audio_embeds ${maxAbsDiff(embeds, golden.readFloat32('audio_embeds'))}`);
      const prompt = buildAlignerPrompt(aligner.tokenizer, c.word_list, c.num_audio_tokens);
      assert.deepEqual(prompt.ids, c.input_ids);
      assert.deepEqual(prompt.timestampPositions, c.timestamp_positions);

      const [r] = await aligner.align([{ samples, text: c.text, language: c.language }]);
      assert.deepEqual(r.units, c.word_list);
      assert.deepEqual(r.rawClasses, c.raw_classes);
      assert.deepEqual(r.items, goldenItems(c));
    });
  }

  test('all cases aligned together as one batch give the same classes', async () => {
    const results = await aligner.align(cases.map((c) => ({ samples: waveformOf(c), text: c.text, language: c.language })));
    results.forEach((r, i) => assert.deepEqual(r.rawClasses, cases[i].raw_classes, cases[i].case));
  });

  test('transcribe with timestamps (tiny-a ASR with context + aligner-a) reproduces the golden transcription', async () => {
    const c = cases.find((x) => x.asr_golden_case);
    const asrIndex = readJson(goldenPath('tiny-a', 'index.json'));
    const asrCase = asrIndex.cases.find((x: any) => `tiny-a:${x.case}` === c.asr_golden_case);
    const asr = await AsrModel.load(goldenPath('tiny-a', 'checkpoint'), { device: 'cpu', quant: 'none', threads: 2 });
    try {
      const result = await runTranscription(
        asr,
        aligner,
        waveformOf(c),
        { context: asrCase.context, timestamps: true, maxNewTokens: asrIndex.model.max_new_tokens },
        { segmentSeconds: 1200, maxBatchSize: 4 },
      );
      assert.equal(result.language, c.transcription.language);
      assert.equal(result.text, c.transcription.text);
      assert.deepEqual(result.words, c.transcription.time_stamps.map((i: any) => ({ text: i.text, start: i.start_time, end: i.end_time })));
    } finally {
      await asr.release();
    }
  });

  test('audio beyond the timestamp range is refused with a clear error', async () => {
    const long = new Float32Array(16000 * 401);
    await assert.rejects(aligner.align([{ samples: long, text: 'hello', language: 'English' }]), /longer than the aligner's 400 s/);
  });
});
