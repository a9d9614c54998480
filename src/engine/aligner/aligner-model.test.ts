/**
 * Conformance of the forced aligner against every golden aligner set (aligner-a always, any
 * other found by src/testing/shared.ts `goldenSets`, e.g. from the reference's held-out aligner-b
 * config; golden/README.md, aligner half): word units, prompt ids, audio embeddings, raw
 * classes at the <timestamp> slots, repaired milliseconds and final items; and the combined
 * transcribe-with-timestamps path (the set's ASR golden + the aligner) against the golden
 * `transcription`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ForcedAligner } from './aligner-model.ts';
import { AsrModel } from '../asr/asr-model.ts';
import { buildAlignerPrompt } from '../text/prompt.ts';
import { clampItems, classesToItems } from './timestamps.ts';
import { SafetensorsStore } from '../checkpoint/safetensors.ts';
import { runTranscription } from '../../pipeline/run-transcription.ts';
import { goldenSets, maxAbsDiff, type GoldenSet } from '../../testing/shared.ts';
import { logMelSpectrogram } from '../../audio/features.ts';

const asrSets = goldenSets('asr', ['tiny-a']);
const goldenItems = (c: any) => c.items.map((i: any) => ({ text: i.text, start: i.start_time, end: i.end_time }));

for (const set of goldenSets('aligner', ['aligner-a'])) conformance(set);

function conformance(set: GoldenSet): void {
  const cases: any[] = set.index.cases;
  const waveformOf = (c: any): Float32Array =>
    SafetensorsStore.openFile(set.path(c.waveform_and_features_file ?? c.case_file_golden)).readFloat32('waveform');

  describe(`${set.name} conformance (fp32)`, () => {
    let aligner: ForcedAligner;
    before(async () => {
      aligner = await ForcedAligner.load(set.path('checkpoint'), { device: 'cpu', quant: 'none', threads: 2 });
    });
    after(async () => aligner?.release());

    for (const c of cases) {
      test(`${c.case}: units, ids, audio embeddings, classes, repaired ms, items`, async () => {
        const samples = waveformOf(c);
        const golden = SafetensorsStore.openFile(set.path(c.case_file_golden));
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
        // The official items, then the same clamped to the audio (random weights put words past its end).
        assert.deepEqual(classesToItems(r.units, r.rawClasses, set.index.model.timestamp_segment_time_ms), goldenItems(c));
        const seconds = samples.length / 16000;
        assert.deepEqual(r.items, clampItems(goldenItems(c), seconds));
        for (const item of r.items) assert.ok(item.start <= item.end && item.end <= seconds, `${c.case}: ${JSON.stringify(item)} within ${seconds} s`);
      });
    }

    test('all cases aligned together as one batch give the same classes', async () => {
      const results = await aligner.align(cases.map((c) => ({ samples: waveformOf(c), text: c.text, language: c.language })));
      results.forEach((r, i) => assert.deepEqual(r.rawClasses, cases[i].raw_classes, cases[i].case));
    });

    const combined = cases.find((x) => x.asr_golden_case);
    // aligner-a has one (tiny-a's de_7s__context); a set generated without --asr-golden has none.
    const skip = set.name !== 'aligner-a' && !combined ? 'no combined ASR + aligner case in this set' : false;
    test(`transcribe with timestamps (the ASR golden's context case + ${set.name}) reproduces the golden transcription`, { skip }, async () => {
      const c = combined;
      assert.ok(c, `${set.name}: no case names asr_golden_case`);
      const [asrName, asrCaseName] = c.asr_golden_case.split(':');
      const asrSet = asrSets.find((s) => s.name === asrName);
      assert.ok(asrSet, `${set.name} aligns ${c.asr_golden_case}: golden set ${asrName} not found`);
      const asrIndex = asrSet.index;
      const asrCase = asrIndex.cases.find((x: any) => x.case === asrCaseName);
      const asr = await AsrModel.load(asrSet.path('checkpoint'), { device: 'cpu', quant: 'none', threads: 2 });
      asr.setMaxBatchSize(4);
      try {
        const result = await runTranscription(
          asr,
          aligner,
          waveformOf(c),
          { context: asrCase.context, timestamps: true, maxNewTokens: asrIndex.model.max_new_tokens },
          { segmentSeconds: 1200 },
        );
        assert.equal(result.language, c.transcription.language);
        assert.equal(result.text, c.transcription.text);
        // The golden times, clamped to the audio's end.
        const golden = c.transcription.time_stamps.map((i: any) => ({ text: i.text, start: i.start_time, end: i.end_time }));
        assert.deepEqual(result.words, clampItems(golden, result.duration));
        assert.ok(result.words!.some((w, i) => w.end < golden[i].end), 'the goldens do pass the end');
      } finally {
        await asr.release();
      }
    });

    test('audio beyond the timestamp range is refused with a clear error', async () => {
      const long = new Float32Array(16000 * 401);
      await assert.rejects(aligner.align([{ samples: long, text: 'hello', language: 'English' }]), /longer than the aligner's 400 s/);
    });
  });
}
